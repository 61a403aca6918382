"""The input direction: what a connector (Kafka, Event Hubs, a file) must provide to the input reader.

A connector only fetches, pauses, resumes and commits. Batching, ordering, retries,
dead-lettering, backpressure and draining are the input reader's, the same for every connector.

Offsets given to ``request_commit`` are *next offsets to read* (Kafka convention): committing
``n`` says every record before ``n`` in that partition has been answered for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import msgspec


class PartitionId(NamedTuple):
    topic: str
    partition: int


# A msgspec struct rather than a dataclass: one is built per record fetched, at half the cost.
class InRecord(msgspec.Struct, gc=False):
    partition: PartitionId
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    #: Milliseconds since the epoch, as the broker or producer stamped it.
    timestamp: int | None = None


class PartitionListener(Protocol):
    """The input reader's side of a rebalance, called by the source."""

    def on_assigned(self, partitions: Sequence[PartitionId]) -> None: ...

    def on_revoked(self, partitions: Sequence[PartitionId]) -> Awaitable[Mapping[PartitionId, int]]:
        """Stop work on ``partitions``; resolves to the final offsets to commit for them."""
        ...

    def on_lost(self, partitions: Sequence[PartitionId]) -> None:
        """The partitions are already someone else's: drop them, commit nothing."""
        ...


class Source(ABC):
    #: Written into every message's ``source.system``.
    system: str

    @abstractmethod
    async def start(self, listener: PartitionListener) -> None: ...

    @abstractmethod
    async def poll(self, max_records: int, timeout_s: float) -> list[InRecord]:
        """Up to ``max_records`` records; fewer (or none) once ``timeout_s`` has passed."""

    @abstractmethod
    def pause(self, partitions: Sequence[PartitionId]) -> None:
        """Ask for no more records of ``partitions`` (takes effect at the next poll; never blocks)."""

    @abstractmethod
    def resume(self, partitions: Sequence[PartitionId]) -> None: ...

    @abstractmethod
    def request_commit(self, offsets: Mapping[PartitionId, int]) -> None:
        """Commit at the next opportunity; never blocks, never commits a partition no longer owned."""

    @abstractmethod
    def committed(self, partition: PartitionId) -> int | None:
        """The last offset known committed for ``partition``."""

    @abstractmethod
    def ready(self) -> tuple[bool, str]: ...

    @abstractmethod
    async def close(self, final_offsets: Mapping[PartitionId, int]) -> None:
        """Commit ``final_offsets`` synchronously, then leave (the group) and release resources."""

    def at_end(self) -> bool:
        """True for a finite source (a file) once everything has been read."""
        return False


@runtime_checkable
class HasLag(Protocol):
    """Optional ability: a source that knows how far behind each partition is."""

    def lag(self) -> Mapping[PartitionId, int]: ...
