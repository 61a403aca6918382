"""The Kafka source's poll job against a consumer stand-in: how it waits, and that it hands on a whole fetch at once.

The real consumer runs in the pipeline and fault tests; here only the order of ``consume`` calls is checked,
which a real broker cannot show without timing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streampod.input_reader.kafka_source import _REST_OF_FETCH_S, KafkaSource
from streampod.metrics import ReaderMetrics
from streampod.source import PartitionId


@dataclass
class Msg:
    """A ``KafkaMessage`` (streampod.kafka.message) built by hand."""

    _offset: int
    _topic: str = "in"
    _partition: int = 0

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return b"{}"

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def error(self) -> Any:
        return None


class Consumer:
    """Answers ``consume`` from a script of (what it returns) and records every call."""

    def __init__(self, *answers: list[Msg]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        self.calls.append((num_messages, timeout))
        return self.answers.pop(0) if self.answers else []


def source_with(consumer: Consumer) -> KafkaSource:
    source = KafkaSource({}, ["in"], ReaderMetrics())
    source._consumer = consumer  # type: ignore[assignment]
    source._assigned = {PartitionId("in", 0)}
    return source


def test_records_already_queued_are_taken_without_waiting() -> None:
    consumer = Consumer([Msg(0), Msg(1)])
    records = source_with(consumer)._poll_job(500, 0.02)
    assert [r.offset for r in records] == [0, 1]
    assert consumer.calls == [(500, 0)]


def test_with_nothing_queued_it_waits_for_the_next_fetch_and_takes_all_it_brought() -> None:
    # The wait ends at the first record of a fetch; the rest of that fetch is queued behind it.
    consumer = Consumer([], [Msg(0)], [Msg(1), Msg(2)])
    records = source_with(consumer)._poll_job(500, 0.02)
    assert [r.offset for r in records] == [0, 1, 2]
    assert consumer.calls == [(500, 0), (1, 0.02), (499, _REST_OF_FETCH_S)]


def test_a_wait_that_brings_nothing_returns_nothing() -> None:
    consumer = Consumer()
    assert source_with(consumer)._poll_job(500, 0.02) == []
    assert consumer.calls == [(500, 0), (1, 0.02)]


def test_a_poll_of_one_record_waits_once() -> None:
    consumer = Consumer([], [Msg(7)])
    assert [r.offset for r in source_with(consumer)._poll_job(1, 0.02)] == [7]
    assert consumer.calls == [(1, 0), (1, 0.02)]
