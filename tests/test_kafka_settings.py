"""STREAMPOD_KAFKA_EXTRA_CONFIG: the user's librdkafka properties win over streampod's tuning
defaults, and the ones the delivery rules rest on are refused at start, by name."""

from __future__ import annotations

import pytest

from streampod.errors import ConfigError
from streampod.input_reader.kafka_source import consumer_config
from streampod.settings import InputReaderSettings, OutputWriterSettings, load

READER = {"kafka_bootstrap_servers": "127.0.0.1:1", "input_topics": "in", "consumer_group": "g"}


def test_extra_config_overrides_the_consumers_tuning_defaults() -> None:
    extra = {"queued.max.messages.kbytes": "4096", "fetch.wait.max.ms": "10", "session.timeout.ms": "6000"}
    s = load(InputReaderSettings, **READER, kafka_extra_config=extra)
    conf = consumer_config(s.librdkafka_config(), "g", "earliest")
    assert {k: conf[k] for k in extra} == extra
    assert conf["enable.auto.commit"] is False
    assert conf["enable.auto.offset.store"] is False


def test_the_broker_holds_a_fetch_for_a_batch_worth_or_the_batch_wait() -> None:
    s = load(InputReaderSettings, **READER, batch_wait_ms=35, batch_max_bytes=65536)
    conf = consumer_config(
        s.librdkafka_config(), "g", "earliest", batch_wait_ms=s.batch_wait_ms, batch_max_bytes=s.batch_max_bytes
    )
    assert (conf["fetch.wait.max.ms"], conf["fetch.min.bytes"]) == (35, 65536)


def test_a_full_prefetch_is_looked_at_again_within_a_batch_wait() -> None:
    # librdkafka's default postpones a partition's next fetch by a second once the prefetch is full.
    s = load(InputReaderSettings, **READER, batch_wait_ms=35)
    conf = consumer_config(s.librdkafka_config(), "g", "earliest", batch_wait_ms=s.batch_wait_ms)
    assert conf["fetch.queue.backoff.ms"] == 35
    assert conf["queued.min.messages"] == 10_000


def test_the_reader_builds_its_consumer_from_its_batch_settings() -> None:
    from streampod.input_reader.service import build_source
    from streampod.metrics import ReaderMetrics

    s = load(InputReaderSettings, **READER, batch_wait_ms=35, batch_max_bytes=65536)
    source = build_source(s, ReaderMetrics())
    assert (source._config["fetch.wait.max.ms"], source._config["fetch.min.bytes"]) == (35, 65536)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("model", "base", "owned", "why"),
    [
        (InputReaderSettings, READER, "enable.auto.commit", "at-least-once"),
        (InputReaderSettings, READER, "group.id", "STREAMPOD_CONSUMER_GROUP"),
        (InputReaderSettings, READER, "partition.assignment.strategy", "cooperative-sticky"),
        (
            OutputWriterSettings,
            {"kafka_bootstrap_servers": "127.0.0.1:1", "output_topic": "out"},
            "acks",
            "at-least-once",
        ),
        (
            OutputWriterSettings,
            {"kafka_bootstrap_servers": "127.0.0.1:1", "output_topic": "out"},
            "linger.ms",
            "STREAMPOD_LINGER_MS",
        ),
    ],
)
def test_properties_streampod_owns_are_refused_by_name(
    model: type[InputReaderSettings | OutputWriterSettings], base: dict[str, str], owned: str, why: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(model, **base, kafka_extra_config={owned: "x", "fetch.max.bytes": "52428800"})
    text = str(info.value)
    assert "STREAMPOD_KAFKA_EXTRA_CONFIG" in text
    assert owned in text
    assert why in text
    assert "fetch.max.bytes" not in text
