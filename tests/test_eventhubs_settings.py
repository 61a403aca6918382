"""Event Hubs settings: every bad combination stops the container with one clear message.

Also: our connection-string parser agrees with the Azure SDK's own, and the Kafka connectors derive
the Event Hubs Kafka endpoint (SASL_SSL, PLAIN, "$ConnectionString") from a connection string.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.eventhub import parse_connection_string

from streampod.errors import ConfigError
from streampod.eventhubs.connection import EventHubConnectionString, check_storage_connection_string
from streampod.settings import InputReaderSettings, OutputWriterSettings, load

KEY = "c2VjcmV0LWtleS12YWx1ZS10aGF0LW11c3QtbmV2ZXItYmUtbG9nZ2Vk="
CONN = f"Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={KEY}"
STORAGE = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("STREAMPOD_"):
            monkeypatch.delenv(name)


def reader(**over: object) -> InputReaderSettings:
    base: dict[str, object] = {
        "input_kind": "eventhubs",
        "input_topics": "orders",
        "consumer_group": "$Default",
        "eventhub_connection_string": CONN,
        "checkpoint_store_connection_string": STORAGE,
        "checkpoint_store_container": "checkpoints",
        "dead_letter_topic": "orders-dlq",
    }
    base.update(over)
    return load(InputReaderSettings, **{k: v for k, v in base.items() if v is not None})


def writer(**over: object) -> OutputWriterSettings:
    base: dict[str, object] = {"output_kind": "eventhubs", "output_topic": "scored", "eventhub_connection_string": CONN}
    base.update(over)
    return load(OutputWriterSettings, **{k: v for k, v in base.items() if v is not None})


def error(build: object, **over: object) -> str:
    with pytest.raises(ConfigError) as info:
        build(**over)  # type: ignore[operator]
    text = str(info.value)
    assert KEY not in text, "a secret leaked into the start-up error"
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    "text",
    [
        CONN,
        CONN + ";EntityPath=orders",
        "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=x&sig=y&se=9",
    ],
)
def test_our_parser_agrees_with_the_sdks(text: str) -> None:
    ours = EventHubConnectionString.parse(text)
    sdk = parse_connection_string(text)
    assert ours.fully_qualified_namespace == sdk.fully_qualified_namespace
    assert ours.entity_path == sdk.eventhub_name
    assert ours.secret == text
    assert KEY not in repr(ours)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a connection string",
        f"SharedAccessKeyName=send;SharedAccessKey={KEY}",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send",
        "Endpoint=sb://ns.servicebus.windows.net/",
    ],
)
def test_malformed_strings_fail_in_both_parsers(text: str) -> None:
    with pytest.raises(ValueError, match=r"^malformed Event Hubs connection string: "):
        EventHubConnectionString.parse(text)
    with pytest.raises(ValueError, match=r"malformed|Invalid|At least one|Should be|Connection string"):
        parse_connection_string(text)


def test_a_good_reader_and_writer_load() -> None:
    r = reader()
    assert (r.dead_letter_sink, r.dead_letter_destination) == ("eventhubs", "orders-dlq")
    assert r.starting_position() == "-1"
    assert reader(eventhub_starting_position="latest").starting_position() == "@latest"
    when = reader(eventhub_starting_position="2025-03-01T10:00:00Z").starting_position()
    assert when == datetime(2025, 3, 1, 10, tzinfo=UTC)
    w = writer()
    conn = w.eventhub_connection()
    assert conn is not None and conn.host == "ns1.servicebus.windows.net"
    r = reader(eventhub_connection_string=None, eventhub_namespace="ns1.servicebus.windows.net")
    assert r.eventhub_connection() is None


def test_connection_string_and_credential_both_missing() -> None:
    text = error(reader, eventhub_connection_string=None)
    assert "STREAMPOD_EVENTHUB_CONNECTION_STRING (or STREAMPOD_EVENTHUB_CONNECTION_STRING_FILE) or " in text
    assert "STREAMPOD_EVENTHUB_NAMESPACE: required when STREAMPOD_INPUT_KIND=eventhubs" in text
    assert "required when STREAMPOD_OUTPUT_KIND=eventhubs" in error(writer, eventhub_connection_string=None)


def test_both_a_connection_string_and_a_namespace() -> None:
    assert "give one" in error(writer, eventhub_namespace="ns1.servicebus.windows.net")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (f"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey={KEY}", "go together"),
        ("Endpoint=https://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b", "sb://"),
        ("garbage", "Key=Value"),
    ],
)
def test_malformed_connection_string(value: str, why: str) -> None:
    text = error(writer, eventhub_connection_string=value)
    assert text.startswith("invalid configuration: STREAMPOD_EVENTHUB_CONNECTION_STRING: malformed")
    assert why in text


def test_connection_string_from_a_missing_or_bad_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert f"STREAMPOD_EVENTHUB_CONNECTION_STRING_FILE: cannot read {missing}" in error(
        writer, eventhub_connection_string=None, eventhub_connection_string_file=missing
    )
    bad = tmp_path / "bad"
    bad.write_text("Endpoint=;x")
    assert "STREAMPOD_EVENTHUB_CONNECTION_STRING_FILE: malformed" in error(
        writer, eventhub_connection_string=None, eventhub_connection_string_file=bad
    )
    good = tmp_path / "good"
    good.write_text(CONN + "\n")
    conn = writer(eventhub_connection_string=None, eventhub_connection_string_file=good).eventhub_connection()
    assert conn is not None and conn.secret == CONN


def test_entity_path_must_match_every_hub() -> None:
    text = error(writer, eventhub_connection_string=CONN + ";EntityPath=other")
    assert "scoped to event hub 'other' (EntityPath) but 'scored' is used too" in text
    writer(eventhub_connection_string=CONN + ";EntityPath=scored")
    text = error(reader, eventhub_connection_string=CONN + ";EntityPath=orders", dead_letter_topic="orders-dlq")
    assert "'orders-dlq' is used too" in text


def test_missing_storage_for_the_input() -> None:
    text = error(reader, checkpoint_store_connection_string=None, checkpoint_store_container=None)
    assert (
        "STREAMPOD_CHECKPOINT_STORE_CONNECTION_STRING (or STREAMPOD_CHECKPOINT_STORE_CONNECTION_STRING_FILE) or "
        in text
    )
    assert "STREAMPOD_CHECKPOINT_STORE_ACCOUNT_URL: required when STREAMPOD_INPUT_KIND=eventhubs" in text
    assert "STREAMPOD_CHECKPOINT_STORE_CONTAINER: required" in text


def test_bad_storage_settings() -> None:
    assert "AccountName needs an AccountKey" in error(reader, checkpoint_store_connection_string="AccountName=a")
    assert "blob container name" in error(reader, checkpoint_store_container="Bad_Name")
    assert "https://<account>" in error(
        reader, checkpoint_store_connection_string=None, checkpoint_store_account_url="acct"
    )
    reader(checkpoint_store_connection_string=None, checkpoint_store_account_url="https://acct.blob.core.windows.net")
    check_storage_connection_string("UseDevelopmentStorage=true")


def test_every_problem_in_one_message() -> None:
    text = error(
        reader,
        consumer_group=None,
        input_topics="a,b",
        eventhub_connection_string=None,
        checkpoint_store_container=None,
        eventhub_starting_position="yesterday",
    )
    for part in (
        "STREAMPOD_EVENTHUB_STARTING_POSITION: Value error, expects earliest, latest or an ISO-8601 time",
        "STREAMPOD_CONSUMER_GROUP: required when STREAMPOD_INPUT_KIND=eventhubs",
        "one event hub per input reader",
        "STREAMPOD_EVENTHUB_NAMESPACE: required",
        "STREAMPOD_CHECKPOINT_STORE_CONTAINER: required",
    ):
        assert part.replace("Value error, ", "") in text


def test_starting_position_needs_a_zone() -> None:
    assert "has no time zone" in error(reader, eventhub_starting_position="2025-03-01T10:00:00")


def test_dead_letter_kinds() -> None:
    text = error(reader, dead_letter_topic=None)
    assert "STREAMPOD_DEAD_LETTER_TOPIC: required when STREAMPOD_DEAD_LETTER_KIND=eventhubs" in text
    assert "'$Default.dlq' is not an event hub name" in error(reader, dead_letter_topic="$Default.dlq")
    text = error(reader, dead_letter_kind="kafka")
    assert "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS: required when STREAMPOD_DEAD_LETTER_KIND=kafka" in text
    r = reader(dead_letter_kind="kafka", dead_letter_topic=None, kafka_bootstrap_servers="127.0.0.1:9092")
    assert (r.dead_letter_sink, r.dead_letter_destination) == ("kafka", "$Default.dlq")
    assert "only for INPUT_KIND=file" in error(reader, dead_letter_kind="file")
    # Kafka input, dead letters to an event hub.
    kafka = {
        "input_kind": "kafka",
        "kafka_bootstrap_servers": "127.0.0.1:9092",
        "checkpoint_store_connection_string": None,
    }
    text = error(reader, **kafka, dead_letter_kind="eventhubs", dead_letter_topic=None, eventhub_connection_string=None)
    assert "STREAMPOD_DEAD_LETTER_TOPIC: required" in text
    assert "required when STREAMPOD_DEAD_LETTER_KIND=eventhubs" in text
    r = reader(**kafka, dead_letter_kind="eventhubs", dead_letter_topic="dlq")
    assert r.dead_letter_sink == "eventhubs"


def test_kafka_endpoint_of_event_hubs(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    w = load(
        OutputWriterSettings,
        output_topic="scored",
        kafka_eventhub_connection_string=CONN,
        kafka_ssl_ca_location=ca,
        kafka_extra_config={"batch.size": "100000"},
    )
    conf = w.librdkafka_config()
    assert conf == {
        "bootstrap.servers": "ns1.servicebus.windows.net:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "$ConnectionString",
        "sasl.password": CONN,
        "socket.keepalive.enable": "true",
        "metadata.max.age.ms": "180000",
        "ssl.ca.location": str(ca),
        "batch.size": "100000",
    }
    assert w.kafka_producer_config()["compression.type"] == "none"
    assert KEY not in repr(w)
    # An explicit port in the Endpoint wins over 9093: local endpoints and tests.
    local = CONN.replace("ns1.servicebus.windows.net", "127.0.0.1:19093")
    w = load(OutputWriterSettings, output_topic="o", kafka_eventhub_connection_string=local)
    assert w.librdkafka_config()["bootstrap.servers"] == "127.0.0.1:19093"


def test_kafka_endpoint_settings_that_clash() -> None:
    with pytest.raises(ConfigError) as info:
        load(
            InputReaderSettings,
            input_topics="t",
            consumer_group="g",
            kafka_eventhub_connection_string=CONN,
            kafka_bootstrap_servers="b:9092",
            kafka_security_protocol="PLAINTEXT",
        )
    text = str(info.value)
    assert "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS, STREAMPOD_KAFKA_SECURITY_PROTOCOL: not used with" in text
    assert KEY not in text
    with pytest.raises(ConfigError, match="STREAMPOD_KAFKA_EVENTHUB_CONNECTION_STRING: malformed"):
        load(InputReaderSettings, input_topics="t", consumer_group="g", kafka_eventhub_connection_string="x=y")
