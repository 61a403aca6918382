"""The services pick the Event Hubs source and sinks from the settings, and import the Azure SDK only then."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streampod.eventhubs.sink import EventHubSink
from streampod.input_reader.eventhubs_source import EventHubSource
from streampod.input_reader.service import build_dead_letter_sink, build_source
from streampod.kafka.sink import KafkaSink
from streampod.metrics import ReaderMetrics
from streampod.output_writer.service import build_sink
from streampod.settings import InputReaderSettings, OutputWriterSettings, load

CONN = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=dGVzdA=="
STORAGE = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=dGVzdA==;EndpointSuffix=core.windows.net"
EVENTHUB_READER = {
    "input_kind": "eventhubs",
    "input_topics": "orders",
    "consumer_group": "$Default",
    "eventhub_connection_string": CONN,
    "checkpoint_store_connection_string": STORAGE,
    "checkpoint_store_container": "checkpoints",
    "dead_letter_topic": "orders-dlq",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("STREAMPOD_"):
            monkeypatch.delenv(name)


def test_a_kafka_stage_never_imports_the_azure_sdk() -> None:
    code = (
        "import sys\n"
        "from streampod.settings import InputReaderSettings, OutputWriterSettings, load\n"
        "from streampod.input_reader.service import build_source, build_dead_letter_sink\n"
        "from streampod.output_writer.service import build_sink\n"
        "from streampod.metrics import ReaderMetrics\n"
        "r = load(InputReaderSettings, kafka_bootstrap_servers='127.0.0.1:1', input_topics='t', consumer_group='g')\n"
        "build_source(r, ReaderMetrics()); build_dead_letter_sink(r)\n"
        "build_sink(load(OutputWriterSettings, kafka_bootstrap_servers='127.0.0.1:1', output_topic='o'))\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'azure')\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_event_hubs_input_and_its_dead_letters() -> None:
    s = load(InputReaderSettings, **EVENTHUB_READER)
    assert isinstance(build_source(s, ReaderMetrics()), EventHubSource)
    assert isinstance(build_dead_letter_sink(s), EventHubSink)
    kafka_dlq = load(
        InputReaderSettings,
        **{**EVENTHUB_READER, "dead_letter_kind": "kafka", "kafka_bootstrap_servers": "127.0.0.1:1"},
    )
    assert isinstance(build_dead_letter_sink(kafka_dlq), KafkaSink)
    kafka_in = load(
        InputReaderSettings,
        kafka_bootstrap_servers="127.0.0.1:1",
        input_topics="t",
        consumer_group="g",
        dead_letter_kind="eventhubs",
        dead_letter_topic="dlq",
        eventhub_connection_string=CONN,
    )
    assert isinstance(build_dead_letter_sink(kafka_in), EventHubSink)


def test_event_hubs_output() -> None:
    s = load(
        OutputWriterSettings,
        output_kind="eventhubs",
        output_topic="scored",
        eventhub_namespace="ns.servicebus.windows.net",
    )
    assert isinstance(build_sink(s), EventHubSink)
