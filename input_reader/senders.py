"""Hand entries to the app, in batch mode (contract v1) or single-message mode (any language).

``deliver`` owns the retry policy for whole-batch failures, per contract v1: unavailable peers
are waited for without limit; other failures are retried within the attempt budget, then the
batch is split so that one poison message cannot hold back the rest, and a lone message that
still fails is dead-lettered with the last error.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from urllib.parse import quote

from streampod.backoff import Backoff
from streampod.client import ContractClient
from streampod.contract import H_HEADER_PREFIX, H_ID, H_KEY, H_SOURCE_PREFIX, encode_batch
from streampod.errors import BatchTooLarge, DeliveryError
from streampod.metrics import ReaderMetrics

from .entries import OK, REQUEUE, Entry, Outcome

log = logging.getLogger(__name__)


class Sender(ABC):
    @abstractmethod
    async def send(self, entries: Sequence[Entry]) -> list[Outcome]:
        """One outcome per entry, or a DeliveryError when the whole batch failed."""


class BatchSender(Sender):
    def __init__(self, client: ContractClient) -> None:
        self.client = client

    async def send(self, entries: Sequence[Entry]) -> list[Outcome]:
        body = encode_batch(e.wire for e in entries if e.wire is not None)
        results = await self.client.send_batch(body, [e.id for e in entries])
        out = []
        for e in entries:
            r = results[e.id]
            out.append(OK if r.status == "ok" else Outcome(r.status, r.error or f"app answered {r.status}"))
        return out


class SingleSender(Sender):
    """One raw payload per POST; 2xx ok, 4xx reject, 5xx retry. Stops at the first retry to keep order."""

    def __init__(self, client: ContractClient, url: str) -> None:
        self.client = client
        self.url = url

    async def send(self, entries: Sequence[Entry]) -> list[Outcome]:
        out: list[Outcome] = []
        for i, e in enumerate(entries):
            status, body = await self.client.send_single(self.url, e.record.value or b"", _headers(e))
            if 200 <= status < 300:
                out.append(OK)
                continue
            reason = f"app answered {status}: {body[:300].decode(errors='replace')}"
            if 400 <= status < 500:
                out.append(Outcome("reject", reason))
            else:
                out.append(Outcome("retry", reason))
                out.extend([REQUEUE] * (len(entries) - i - 1))
                break
        return out


def _headers(e: Entry) -> dict[str, str]:
    r = e.record
    h = {
        "Content-Type": "application/octet-stream",
        H_ID: e.id,
        H_SOURCE_PREFIX + "topic": r.partition.topic,
        H_SOURCE_PREFIX + "partition": str(r.partition.partition),
        H_SOURCE_PREFIX + "offset": str(r.offset),
    }
    if r.timestamp is not None:
        h[H_SOURCE_PREFIX + "timestamp"] = str(r.timestamp)
    if r.key is not None:
        h[H_KEY] = quote(r.key, safe="")
    for name, value in r.headers or ():
        h[H_HEADER_PREFIX + name] = quote(value or b"", safe="")
    return h


class Delivery:
    """Send with the retry policy of contract v1; always ends with one outcome per entry."""

    def __init__(self, sender: Sender, backoff: Backoff, max_attempts: int, metrics: ReaderMetrics) -> None:
        self.sender = sender
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.metrics = metrics
        #: False while the app cannot be reached (readiness).
        self.app_reachable = True

    async def deliver(self, entries: Sequence[Entry]) -> list[Outcome]:
        attempt = 0
        waits = 0
        while True:
            try:
                with self.metrics.batch_seconds.time():
                    outcomes = await self.sender.send(entries)
                self.app_reachable = True
                return outcomes
            except BatchTooLarge as exc:
                return await self._split(entries, exc)
            except DeliveryError as exc:
                self.metrics.batch_retries.labels(error=type(exc).__name__).inc()
                self.metrics.messages_retried.labels(reason="batch").inc(len(entries))
                waits += 1
                if exc.bounded:
                    attempt += 1
                    if attempt >= self.max_attempts:
                        return await self._split(entries, exc)
                else:
                    self.app_reachable = False
                log.warning(
                    "batch not delivered, will retry",
                    extra={
                        "error": exc.reason,
                        "messages": len(entries),
                        "attempt": attempt,
                        "first_id": entries[0].id,
                    },
                )
                await asyncio.sleep(self.backoff.delay(waits))

    async def _split(self, entries: Sequence[Entry], exc: DeliveryError) -> list[Outcome]:
        if len(entries) == 1:
            why = "too large for the app (413)" if isinstance(exc, BatchTooLarge) else "gave up after retries"
            return [Outcome("reject", f"{why}: {exc.reason}", stage="reader")]
        half = len(entries) // 2
        log.warning("splitting a failing batch", extra={"messages": len(entries), "error": exc.reason})
        return await self.deliver(entries[:half]) + await self.deliver(entries[half:])


__all__ = ["BatchSender", "Delivery", "Sender", "SingleSender"]
