"""The output direction: where records go, and what each write answered.

A ``Sink`` takes a batch of records and answers one ``Delivery`` per record, in order, only once
each record is durable (Kafka: acknowledged by ``acks=all``; a file: flushed and fsync'd). The
output writer serves contract v1 over any sink, and the input reader writes dead letters through
one, so neither cares whether the destination is Kafka or a local file.

These types carry no broker dependency, so a file-only process never imports confluent-kafka.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec


# A msgspec struct: the writer builds one per message, and a dataclass's __init__ costs twice as much.
class OutRecord(msgspec.Struct, gc=False):
    topic: str
    key: bytes | None
    value: bytes | None
    #: A list (what librdkafka takes); a str value is written as its UTF-8 bytes.
    headers: Sequence[tuple[str, str | bytes]] | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    error: str | None = None
    """Why the record was not written (None when ok)."""
    retriable: bool = True
    """False when the record itself can never be written (e.g. too large): dead-letter it."""


class Sink(ABC):
    @abstractmethod
    async def start(self) -> None:
        """Connect or open the destination; called once before the first write."""

    @abstractmethod
    async def write(self, records: Sequence[OutRecord]) -> list[Delivery]:
        """Write every record; one Delivery per record, same order, each final."""

    @abstractmethod
    def ready(self) -> tuple[bool, str]:
        """(able to write now?, why): False while the destination is known to be unreachable."""

    @abstractmethod
    async def close(self) -> None:
        """Finish what is in flight, then release the destination."""
