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
from dataclasses import dataclass
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
    """Contract v1 batches. Batches handed over in the same turn of the event loop go out together.

    One poll fills several partitions' lanes at once, and each lane hands over its batch in the same
    turn: sent apart, that is one request per partition, each paying the HTTP and framework cost of a
    request in all three containers for a few messages at low rates. Joined (up to the batch limits)
    it is one request per poll, and the app's code sees one larger batch. Order is unaffected: each
    lane still has one batch in flight, and a batch is never split across requests.
    """

    def __init__(
        self, client: ContractClient, *, max_messages: int, max_bytes: int, metrics: ReaderMetrics | None = None
    ) -> None:
        self.client = client
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._waiting: list[_Handed] = []
        self._flush_scheduled = False
        self._requests: set[asyncio.Task[None]] = set()

    async def send(self, entries: Sequence[Entry]) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        handed = _Handed(entries, loop.create_future())
        self._waiting.append(handed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await handed.future

    def _flush(self) -> None:
        self._flush_scheduled = False
        waiting, self._waiting = self._waiting, []
        group: list[_Handed] = []
        count = size = 0
        for handed in waiting:
            if handed.future.done():  # cancelled: its partition was revoked before the request went
                continue
            n, b = len(handed.entries), sum(e.size for e in handed.entries)
            if group and (count + n > self.max_messages or size + b > self.max_bytes):
                self._start(group)
                group, count, size = [], 0, 0
            group.append(handed)
            count += n
            size += b
        if group:
            self._start(group)

    def _start(self, group: list[_Handed]) -> None:
        task = asyncio.create_task(self._request(group))
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _request(self, group: list[_Handed]) -> None:
        entries = [e for handed in group for e in handed.entries]
        try:
            outcomes = await self._send_now(entries)
        except BatchTooLarge as exc:
            if len(group) == 1:
                group[0].fail(exc)
                return
            # Joined, the batches were too large: each goes alone, and splits itself if it must.
            for handed in group:
                self._start([handed])
            return
        except asyncio.CancelledError:
            for handed in group:
                handed.future.cancel()
            raise
        except Exception as exc:  # a DeliveryError, or a bug: each lane handles it as its own batch's
            for handed in group:
                handed.fail(exc)
            return
        at = 0
        for handed in group:
            if not handed.future.done():
                handed.future.set_result(outcomes[at : at + len(handed.entries)])
            at += len(handed.entries)

    async def _send_now(self, entries: Sequence[Entry]) -> list[Outcome]:
        """One request with exactly ``entries``."""
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(entries))
        body = encode_batch(e.wire for e in entries if e.wire is not None)
        results = await self.client.send_batch(body, [e.id for e in entries])
        out = []
        for e in entries:
            r = results[e.id]
            out.append(OK if r.status == "ok" else Outcome(r.status, r.error or f"app answered {r.status}"))
        return out


@dataclass(slots=True)
class _Handed:
    entries: Sequence[Entry]
    future: asyncio.Future[list[Outcome]]

    def fail(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


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
