"""Event Hubs through its Kafka endpoint, for real: the stage is given only a connection string and a CA.

The local broker opens an extra SASL_SSL listener shaped like Event Hubs' Kafka endpoint: TLS with a
certificate from a CA made by this test, SASL/PLAIN, user "$ConnectionString", the connection string
as the password. The connection string's Endpoint names 127.0.0.1 and that listener's port, which the
connectors use instead of 9093 (see docs/eventhubs.md). Inputs are produced and outputs verified on
the broker's PLAINTEXT listener; the stage itself knows only the connection string.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pipeline_support import TRANSFORM_APP, check_complete_and_ordered, keyed_values, produce, read_all
from pipeline_support import wait_committed_to_end as committed_to_end
from tls_support import Pki, make_pki

from streampod.localkafka import LocalKafka, SaslSslListener, create_topic
from streampod.ports import free_port
from streampod.settings import OutputWriterSettings, load

pytestmark = pytest.mark.kafka

KEY = "dGVzdC1rZXktZm9yLXRoZS1rYWZrYS1lbmRwb2ludA=="


def connection_string(port: int, key: str = KEY) -> str:
    return f"Endpoint=sb://127.0.0.1:{port}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={key}"


class Endpoint:
    def __init__(self, kafka: LocalKafka, secret: str, pki: Pki) -> None:
        self.kafka, self.secret, self.pki = kafka, secret, pki


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    # PLAIN compares the whole connection string, which names the port: choose it before the broker.
    secret = connection_string(free_port())
    port = int(secret.split("127.0.0.1:")[1].split("/")[0])
    listener = SaslSslListener("$ConnectionString", secret, pki.server, port=port)
    try:
        kafka = LocalKafka(mode="jars", sasl_ssl=listener).start()
    except RuntimeError as exc:
        pytest.skip(f"no jars broker for the SASL_SSL listener: {exc}")
    try:
        yield Endpoint(kafka, secret, pki)
    finally:
        kafka.stop()


def test_derived_config_authenticates_and_a_wrong_key_does_not(endpoint: Endpoint) -> None:
    def metadata(secret: str) -> object:
        s = load(
            OutputWriterSettings,
            output_topic="x",
            kafka_eventhub_connection_string=secret,
            kafka_ssl_ca_location=endpoint.pki.ca,
        )
        conf = {**s.librdkafka_config(), "log_level": 0, "reconnect.backoff.max.ms": 200}
        return AdminClient(conf).list_topics(timeout=10).brokers

    assert metadata(endpoint.secret), "the derived SASL_SSL config got no metadata"
    port = int(endpoint.kafka.sasl_ssl_bootstrap.rsplit(":", 1)[1])
    with pytest.raises(KafkaException):
        metadata(connection_string(port, key="d3Jvbmcta2V5"))


def test_pipeline_through_the_event_hubs_kafka_endpoint(endpoint: Endpoint, stage_factory, tmp_path: Path) -> None:
    plain = endpoint.kafka.bootstrap_servers
    t_in, t_out = f"in-{uuid.uuid4().hex[:8]}", f"out-{uuid.uuid4().hex[:8]}"
    for name in (t_in, t_out):
        create_topic(plain, name, 3)
    inputs = keyed_values(1500, keys=60)
    produce(plain, t_in, inputs)
    # The secret as Kubernetes would mount it: a file.
    secret_file = tmp_path / "connection-string"
    secret_file.write_text(endpoint.secret + "\n")
    common = {
        "STREAMPOD_KAFKA_EVENTHUB_CONNECTION_STRING_FILE": str(secret_file),
        "STREAMPOD_KAFKA_SSL_CA_LOCATION": str(endpoint.pki.ca),
    }
    group = f"eh-{uuid.uuid4().hex[:8]}"
    stage = stage_factory(
        app_module=str(TRANSFORM_APP),
        reader_env={**common, "STREAMPOD_INPUT_TOPICS": t_in, "STREAMPOD_CONSUMER_GROUP": group},
        writer_env={**common, "STREAMPOD_OUTPUT_TOPIC": t_out},
    )
    stage.start()
    outputs = read_all(plain, [t_out], len(inputs), timeout=120)
    assert check_complete_and_ordered(outputs, inputs) == 0
    assert all(o.json()["processed"] is True for o in outputs)
    committed_to_end(plain, group, t_in, 3)
    assert stage.stop() == {"input-reader": 0, "app": 0, "output-writer": 0}
    logs = stage.logs()
    assert KEY not in logs, "the connection string's key appeared in a log"
