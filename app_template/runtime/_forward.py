"""Handing a batch's outputs to the output writer, behind a small interface tests can swap.

``HttpForwarder`` posts contract v1 batches to the real writer; ``MemoryForwarder`` records
outputs in memory and answers as told. ``forward`` adds what the contract asks of every sender:
a 413 splits the batch in halves, and a lone output still too large rejects its input.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from streampod import contract
from streampod.client import ContractClient
from streampod.errors import BatchTooLarge, DeliveryError, PeerFailed, PeerUnavailable

from ._process import OutRecord

_CHECK_TIMEOUT_S = 1.0


class Forwarder(Protocol):
    async def send(self, records: Sequence[OutRecord]) -> Mapping[str, contract.Result]:
        """The writer's result for every record, or a DeliveryError for the whole batch."""
        ...

    async def check(self) -> None:
        """Return when the writer can be reached; raise PeerUnavailable when it cannot."""
        ...


async def forward(forwarder: Forwarder, records: Sequence[OutRecord]) -> dict[str, contract.Result]:
    """Send ``records`` as one batch, split on 413; the result for every record id."""
    try:
        return dict(await forwarder.send(records))
    except BatchTooLarge:
        if len(records) == 1:
            rid = records[0].id
            return {rid: contract.Result(id=rid, status="reject", error="output too large for the output writer")}
    half = len(records) // 2
    # In order, one after the other: outputs of one key stay in order downstream.
    answers = await forward(forwarder, records[:half])
    answers.update(await forward(forwarder, records[half:]))
    return answers


class HttpForwarder:
    """The real output writer, reached through a pooled ContractClient."""

    def __init__(self, client: ContractClient, host: str, port: int) -> None:
        self.client = client
        self.host = host
        self.port = port

    async def send(self, records: Sequence[OutRecord]) -> Mapping[str, contract.Result]:
        body = contract.encode_batch(records)
        return await self.client.send_batch(body, [r.id for r in records])

    async def check(self) -> None:
        # A TCP connect is enough: the writer answers 503 itself when its broker is down.
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT_S):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise PeerUnavailable(
                f"output writer at {self.host}:{self.port} unreachable: {type(exc).__name__}"
            ) from None
        writer.close()
        # A reset while closing says nothing about readiness.
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@dataclass(slots=True)
class Forwarded:
    """One output as the output writer received it, its value decoded."""

    id: str
    key: str | None
    value: Any
    encoding: contract.Encoding
    headers: dict[str, str]
    topic: str | None

    @property
    def input_id(self) -> str:
        return self.id.rpartition(":")[0]


def _forwarded(r: OutRecord) -> Forwarded:
    value: Any = r.value
    if value is not None:
        if r.encoding == "json":
            value = orjson.loads(bytes(value))
        elif r.encoding == "base64":
            value = base64.b64decode(value)
    return Forwarded(r.id, r.key, value, r.encoding, dict(r.headers), r.topic)


Decide = Callable[[Forwarded], "tuple[contract.Status, str | None]"]


class MemoryForwarder:
    """An output writer in memory, for tests: records every output, answers as told.

    ``answer("retry", "broker down")`` makes it answer that for every output from now on;
    ``decide=fn`` answers per output; ``unavailable()`` / ``failing()`` make it fail whole
    batches as a writer that is down (503) or broken (500) would; ``max_batch=n`` answers 413 to
    batches of more than ``n`` outputs. ``outputs`` holds what was answered ok, ``batches``
    every batch received, in order.
    """

    def __init__(self, *, max_batch: int | None = None, decide: Decide | None = None) -> None:
        self.max_batch = max_batch
        self.decide = decide
        self.reachable = True
        self.outputs: list[Forwarded] = []
        self.batches: list[list[Forwarded]] = []
        self._status: contract.Status = "ok"
        self._error: str | None = None
        self._raise: DeliveryError | None = None

    def answer(self, status: contract.Status, error: str | None = None) -> None:
        """Answer ``status`` (with ``error``) for every output from now on."""
        self._status, self._error = status, error

    def unavailable(self, reason: str = "output writer unavailable") -> None:
        """Fail every batch as an unreachable writer does (the app answers 503)."""
        self._raise = PeerUnavailable(reason, status=503)

    def failing(self, reason: str = "output writer failed") -> None:
        """Fail every batch as a broken writer does (the app answers 502)."""
        self._raise = PeerFailed(reason, status=500)

    def recover(self) -> None:
        """Answer ok again."""
        self._raise, self._status, self._error = None, "ok", None
        self.reachable = True

    async def send(self, records: Sequence[OutRecord]) -> Mapping[str, contract.Result]:
        if self._raise is not None:
            raise self._raise
        if self.max_batch is not None and len(records) > self.max_batch:
            raise BatchTooLarge("batch too large (413)", status=413)
        batch = [_forwarded(r) for r in records]
        self.batches.append(batch)
        results = {}
        for out in batch:
            status, error = self.decide(out) if self.decide is not None else (self._status, self._error)
            if status == "ok":
                self.outputs.append(out)
            results[out.id] = contract.Result(id=out.id, status=status, error=error)
        return results

    async def check(self) -> None:
        if not self.reachable or isinstance(self._raise, PeerUnavailable):
            raise PeerUnavailable("output writer unreachable (MemoryForwarder)")
