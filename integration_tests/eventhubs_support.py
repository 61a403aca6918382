"""Helpers for the Event Hubs tests: an in-process reader over the real source, the real checkpoint
store on Azurite, the SDK's own clients over the in-memory namespace (streampod.eventhubs.testing)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from azure.eventhub.aio import CheckpointStore, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

from streampod.backoff import Backoff
from streampod.eventhubs.sink import EventHubSink
from streampod.input_reader.deadletter import DeadLetters
from streampod.input_reader.entries import OK, Entry, Outcome
from streampod.input_reader.eventhubs_source import EventHubSource
from streampod.input_reader.reader import Reader, ReaderPolicy
from streampod.input_reader.senders import Delivery, Sender
from streampod.metrics import ReaderMetrics
from streampod.sink import OutRecord

CONN = "Endpoint=sb://memory.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=dGVzdC1rZXk="
NAMESPACE = "memory.servicebus.windows.net"
GROUP = "$default"


class App(Sender):
    """The app's answers, in memory: ok for everything, except while ``hold`` says a batch must wait."""

    def __init__(self, name: str = "app") -> None:
        self.name = name
        self.answered: list[tuple[int, int]] = []
        self.hold: Callable[[Sequence[Entry]], bool] = lambda entries: False
        self.release = asyncio.Event()
        self.seen = asyncio.Event()

    async def send(self, entries: Sequence[Entry]) -> list[Outcome]:
        self.seen.set()
        if self.hold(entries):
            await self.release.wait()
        self.answered += [(e.record.partition.partition, e.record.offset) for e in entries]
        return [OK for _ in entries]


class NoDeadLetters:
    async def write(self, records: Sequence[OutRecord]) -> list[Any]:
        raise AssertionError("nothing should be dead-lettered here")


class RunningReader:
    def __init__(self, reader: Reader, task: asyncio.Task[None], stop: asyncio.Event, source: EventHubSource) -> None:
        self.reader, self.task, self.stop_event, self.source = reader, task, stop, source

    @property
    def partitions(self) -> set[int]:
        return {p.partition for p in self.reader.lanes}

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 30)


def store(connection_string: str, container: str) -> BlobCheckpointStore:
    return BlobCheckpointStore.from_connection_string(connection_string, container)


async def start_reader(
    storage: str, container: str, hub: str, app: App, *, balance_s: float = 0.3, expiration_s: float = 3.0
) -> RunningReader:
    def client(checkpoints: CheckpointStore) -> EventHubConsumerClient:
        return EventHubConsumerClient.from_connection_string(
            CONN,
            GROUP,
            eventhub_name=hub,
            checkpoint_store=checkpoints,
            load_balancing_interval=balance_s,
            partition_ownership_expiration_interval=expiration_s,
        )

    metrics = ReaderMetrics()
    backoff = Backoff(0.01, 0.05)
    source = EventHubSource(
        client,
        store(storage, container),
        hub,
        metrics,
        starting_position="-1",
        ownership_expiration_s=expiration_s,
        max_batch_size=50,
        queue_capacity=100,
    )
    reader = Reader(
        source,
        Delivery(app, backoff, 3, metrics),
        DeadLetters(NoDeadLetters(), "dlq", source.system, backoff, metrics),
        ReaderPolicy(commit_interval_s=0.05, batch_max_messages=20, drain_timeout_s=5),
        metrics,
        backoff,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    return RunningReader(reader, task, stop, source)


async def publish(hub: str, items: Sequence[tuple[str, dict[str, Any]]], connection: str = CONN) -> None:
    """Through the real sink and the SDK's producer client, as the output writer would."""

    def producer(name: str) -> EventHubProducerClient:
        return EventHubProducerClient.from_connection_string(connection, eventhub_name=name)

    sink = EventHubSink(producer, hub)
    await sink.start()
    try:
        results = await sink.write([OutRecord(hub, k.encode(), orjson.dumps(v)) for k, v in items])
        assert all(d.ok for d in results), results
    finally:
        await sink.close()


async def checkpoints(storage: str, container: str, hub: str) -> dict[int, dict[str, Any]]:
    s = store(storage, container)
    try:
        found = await s.list_checkpoints(NAMESPACE, hub, GROUP)
        return {int(c["partition_id"]): c for c in found}
    finally:
        await s.close()


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if await result if asyncio.iscoroutine(result) else result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what}")
