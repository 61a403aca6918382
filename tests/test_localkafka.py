"""The local Kafka broker works end to end, and survives being stopped and started again."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer

from streampod.localkafka import LocalKafka
from streampod.pytest_kafka import TopicFactory

pytestmark = pytest.mark.kafka

Record = tuple[str, str]  # key, value


def _producer(bootstrap: str, **extra: str | int | bool) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, **extra})


def _produce(producer: Producer, topic: str, records: list[Record]) -> list[Message]:
    delivered: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(error)
        else:
            delivered.append(message)

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []
    return delivered


def _consume(bootstrap: str, topic: str, count: int, timeout_s: float = 30) -> dict[int, list[Record]]:
    """Read `count` records from the start of `topic`, grouped by partition in offset order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    by_partition: dict[int, list[Record]] = {}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        received = 0
        while received < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            key, value = message.key(), message.value()
            assert isinstance(key, bytes)
            assert isinstance(value, bytes)
            by_partition.setdefault(message.partition() or 0, []).append((key.decode(), value.decode()))
            received += 1
    finally:
        consumer.close()
    return by_partition


def _text(data: str | bytes | None) -> str:
    assert data is not None
    return data if isinstance(data, str) else data.decode()


def _sent_by_partition(delivered: list[Message]) -> dict[int, list[Record]]:
    by_partition: dict[int, list[Record]] = {}
    for message in sorted(delivered, key=lambda m: (m.partition() or 0, m.offset() or 0)):
        record = (_text(message.key()), _text(message.value()))
        by_partition.setdefault(message.partition() or 0, []).append(record)
    return by_partition


def test_produce_and_consume_on_three_partitions(kafka_broker: LocalKafka, topic_factory: TopicFactory) -> None:
    topic = topic_factory(partitions=3, prefix="roundtrip")
    records = [(f"user-{i % 7}", f"event-{i}") for i in range(60)]
    producer = _producer(kafka_broker.bootstrap_servers)

    delivered = _produce(producer, topic, records)

    sent = _sent_by_partition(delivered)
    assert set(sent) == {0, 1, 2}, "seven keys should land on all three partitions"
    assert _consume(kafka_broker.bootstrap_servers, topic, len(records)) == sent


@pytest.mark.slow
def test_broker_down_then_back_loses_nothing(kafka_broker: LocalKafka, topic_factory: TopicFactory) -> None:
    if not kafka_broker.can_restart:
        pytest.skip(f"a broker of kind {kafka_broker.kind!r} cannot be stopped and restarted here")
    topic = topic_factory(partitions=3, prefix="outage")
    # A long message timeout: the producer must hold the record through the outage, not give up.
    producer = _producer(
        kafka_broker.bootstrap_servers, **{"message.timeout.ms": 120_000, "reconnect.backoff.max.ms": 500}
    )
    before = _produce(producer, topic, [(f"k{i}", f"before-{i}") for i in range(20)])

    kafka_broker.stop_broker_process()
    try:
        during: list[Message] = []
        producer.produce(topic, key="k0", value="during-outage", on_delivery=lambda e, m: during.append(m))
        assert producer.flush(3) == 1, "nothing should be delivered while the broker is down"
    finally:
        kafka_broker.start_broker_process()

    assert producer.flush(60) == 0
    assert [m.error() for m in during] == [None]
    expected = _sent_by_partition(before + during)
    assert _consume(kafka_broker.bootstrap_servers, topic, len(before) + 1) == expected
