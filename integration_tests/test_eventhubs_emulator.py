"""The native Event Hubs connectors end to end against Microsoft's Event Hubs emulator (Docker only).

Where a Docker engine answers, testcontainers starts the emulator (with its own Azurite for metadata)
and the stage's three real processes run Event Hubs in, Event Hubs out, with checkpoints in the test's
Azurite. Where none answers, the test is skipped with the reason, and docs/eventhubs.md says what the
in-memory AMQP seam does and does not prove instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from eventhubs_support import publish

from streampod.localkafka import _docker_unavailable_reason
from streampod.pytest_azurite import Azurite

_NO_DOCKER = _docker_unavailable_reason()
pytestmark = pytest.mark.skipif(_NO_DOCKER is not None, reason=f"no Event Hubs emulator without Docker: {_NO_DOCKER}")

EMULATOR_IMAGE = "mcr.microsoft.com/azure-messaging/eventhubs-emulator:2.1.0"
AZURITE_IMAGE = "mcr.microsoft.com/azure-storage/azurite:3.35.0"
AMQP_PORT = 5672
GROUP = "streampod"


def emulator_config(hubs: dict[str, int]) -> dict[str, Any]:
    return {
        "UserConfig": {
            "NamespaceConfig": [
                {
                    "Type": "EventHub",
                    "Name": "emulatorNs1",
                    "Entities": [
                        {
                            "Name": name,
                            "PartitionCount": partitions,
                            "ConsumerGroups": [{"Name": GROUP}],
                        }
                        for name, partitions in hubs.items()
                    ],
                }
            ],
            "LoggingConfig": {"Type": "File"},
        }
    }


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The emulator's connection string (namespace-level), its AMQP port published on loopback."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network
    from testcontainers.core.waiting_utils import wait_for_logs

    config = tmp_path_factory.mktemp("emulator") / "Config.json"
    config.write_text(json.dumps(emulator_config({"orders": 2, "scored": 2, "orders-dlq": 1})))
    with Network() as network:
        metadata = DockerContainer(AZURITE_IMAGE).with_network(network).with_network_aliases("azurite")
        metadata.with_command(
            "azurite --blobHost 0.0.0.0 --queueHost 0.0.0.0 --tableHost 0.0.0.0 --skipApiVersionCheck"
        )
        with metadata:
            emulator = (
                DockerContainer(EMULATOR_IMAGE)
                .with_network(network)
                .with_env("ACCEPT_EULA", "Y")
                .with_env("BLOB_SERVER", "azurite")
                .with_env("METADATA_SERVER", "azurite")
                .with_volume_mapping(str(config), "/Eventhubs_Emulator/ConfigFiles/Config.json", "ro")
                .with_bind_ports(AMQP_PORT, ("127.0.0.1", None))  # type: ignore[arg-type]
            )
            with emulator:
                wait_for_logs(emulator, "Emulator Service is Successfully Up", timeout=180)
                port = emulator.get_exposed_port(AMQP_PORT)
                yield (
                    f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
                    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
                )


async def _receive(connection: str, hub: str, expected: int, within: float) -> list[Any]:
    from azure.eventhub.aio import EventHubConsumerClient

    got: list[Any] = []
    enough = asyncio.Event()
    client = EventHubConsumerClient.from_connection_string(connection, GROUP, eventhub_name=hub)

    async def on_batch(ctx: Any, events: list[Any]) -> None:
        got.extend(events)
        if len(got) >= expected:
            enough.set()

    task = asyncio.create_task(client.receive_batch(on_batch, starting_position="-1", max_wait_time=1))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(enough.wait(), within)
    await client.close()
    task.cancel()
    return got


def test_native_event_hubs_in_and_out(emulator: str, azurite: Azurite, stage_factory, tmp_path: Path) -> None:
    from pipeline_support import TRANSFORM_APP

    container = azurite.create_container()
    inputs = [(f"k{i % 10}", {"key": f"k{i % 10}", "seq": i // 10, "i": i, "reject": i % 50 == 7}) for i in range(300)]
    asyncio.run(publish("orders", inputs, connection=emulator))
    secret = tmp_path / "eventhubs"
    secret.write_text(emulator)
    common = {"STREAMPOD_EVENTHUB_CONNECTION_STRING_FILE": str(secret)}
    stage = stage_factory(
        app_module=str(TRANSFORM_APP),
        reader_env={
            **common,
            "STREAMPOD_INPUT_KIND": "eventhubs",
            "STREAMPOD_INPUT_TOPICS": "orders",
            "STREAMPOD_CONSUMER_GROUP": GROUP,
            "STREAMPOD_DEAD_LETTER_TOPIC": "orders-dlq",
            "STREAMPOD_CHECKPOINT_STORE_CONNECTION_STRING": azurite.connection_string,
            "STREAMPOD_CHECKPOINT_STORE_CONTAINER": container,
            "STREAMPOD_EVENTHUB_LOAD_BALANCING_INTERVAL_S": "2",
        },
        writer_env={**common, "STREAMPOD_OUTPUT_KIND": "eventhubs", "STREAMPOD_OUTPUT_TOPIC": "scored"},
    )
    stage.start()
    wanted = [v for _, v in inputs if not v["reject"]]
    out = asyncio.run(_receive(emulator, "scored", len(wanted), 180))
    values = [orjson.loads(b"".join(e.body)) for e in out]
    assert sorted(v["i"] for v in values) == sorted(v["i"] for v in wanted)
    assert all(v["processed"] for v in values)
    dead = asyncio.run(_receive(emulator, "orders-dlq", len(inputs) - len(wanted), 60))
    assert len(dead) == len(inputs) - len(wanted)
    assert stage.stop() == {"input-reader": 0, "app": 0, "output-writer": 0}
