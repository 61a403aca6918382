"""The in-process limit: one Python process, confluent-kafka consume in batches → transform → produce.

At-least-once like the pipeline: the producer is idempotent with ``acks=all``, and a batch's input
offsets are stored (``enable.auto.offset.store=false``) only once every output of that batch and of
every batch before it was acknowledged; librdkafka's auto-commit then commits stored offsets only.

``python -m streampod.bench.inprocess --bootstrap H:P --input T --output T --group G``; SIGTERM
stops it after a final flush and commit.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from streampod.bench.signals import stop_event
from streampod.bench.transform import transform

BATCH = 500


class _Batch:
    """One consumed batch: how many outputs are unacknowledged, and the offsets to store after them."""

    __slots__ = ("failed", "offsets", "pending")

    def __init__(self, messages: list[Message]) -> None:
        self.pending = len(messages)
        self.failed: KafkaError | None = None
        ends: dict[tuple[str, int], int] = {}
        for m in messages:
            # Messages without an error always carry their coordinates.
            ends[(str(m.topic()), int(m.partition() or 0))] = int(m.offset() or 0) + 1
        self.offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]

    def delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.failed = err
        self.pending -= 1


def run(bootstrap: str, topic_in: str, topic_out: str, group: str) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,
            "partition.assignment.strategy": "cooperative-sticky",
            "log_level": 3,
        }
    )
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5, "log_level": 3}
    )
    stopping = stop_event()
    in_flight: deque[_Batch] = deque()

    def settle() -> None:
        # Store offsets in batch order, and only up to the first batch not yet fully acknowledged.
        while in_flight and in_flight[0].pending == 0:
            done = in_flight.popleft()
            if done.failed is not None:
                raise RuntimeError(f"delivery failed: {done.failed}")
            consumer.store_offsets(offsets=done.offsets)

    consumer.subscribe([topic_in])
    try:
        while not stopping.is_set():
            messages = [m for m in consumer.consume(BATCH, 0.1) if m.error() is None]
            if messages:
                batch = _Batch(messages)
                in_flight.append(batch)
                for m in messages:
                    out = transform(m.value())  # type: ignore[arg-type]
                    while True:
                        try:
                            producer.produce(topic_out, out, m.key(), on_delivery=batch.delivered)
                            break
                        except BufferError:
                            producer.poll(0.05)
            producer.poll(0)
            settle()
        producer.flush(30)
        settle()
    finally:
        consumer.close()  # commits the stored offsets
    return 0 if not in_flight else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streampod.bench.inprocess", description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--group", required=True)
    a = p.parse_args(argv)
    return run(a.bootstrap, a.input, a.output, a.group)


if __name__ == "__main__":
    sys.exit(main())
