"""The Event Hubs sink over the SDK's own EventHubProducerClient; only the AMQP links are in memory
(streampod.eventhubs.testing), so batching, size limits and error mapping are the SDK's own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from azure.eventhub._pyamqp.error import AMQPConnectionError, ErrorCondition
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.exceptions import EventDataError, EventDataSendError

from streampod.eventhubs.sink import EventHubSink, classify
from streampod.eventhubs.testing import KEY, MemoryNamespace
from streampod.sink import OutRecord

CONN = "Endpoint=sb://memory.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=dGVzdA=="


@pytest.fixture
def namespace(monkeypatch: pytest.MonkeyPatch) -> MemoryNamespace:
    ns = MemoryNamespace(max_message_size=4096)
    ns.create_hub("out", 4)
    ns.create_hub("dlq", 1)
    ns.install(monkeypatch)
    return ns


@pytest.fixture
async def sink(namespace: MemoryNamespace) -> AsyncIterator[EventHubSink]:
    def producer(hub: str) -> EventHubProducerClient:
        # No SDK-level retries, so that an injected failure reaches the sink.
        return EventHubProducerClient.from_connection_string(CONN, eventhub_name=hub, retry_total=0)

    s = EventHubSink(producer, "out", send_timeout_s=5)
    await s.start()
    yield s
    await s.close()


def rec(i: int, key: str | None = "k", size: int = 20, topic: str = "out") -> OutRecord:
    value = f'{{"i": {i}, "pad": "{"x" * size}"}}'.encode()
    return OutRecord(topic, None if key is None else key.encode(), value, [("trace", f"t{i}".encode())])


async def test_batches_never_exceed_the_limit_and_keep_order(namespace: MemoryNamespace, sink: EventHubSink) -> None:
    records = [rec(i, size=400) for i in range(40)]
    results = await sink.write(records)
    assert all(d.ok for d in results)
    assert len(namespace.batch_sizes) > 1, "40 events of ~430 bytes cannot fit one 4 KiB batch"
    assert all(size <= 4096 for size in namespace.batch_sizes)
    stored = [e for p in namespace.hubs["out"].partitions for e in p]
    assert len(stored) == 40
    assert len({namespace.hubs["out"].partition_for(b"k")}) == 1
    bodies = [b"".join(e.message.data) for e in stored]  # type: ignore[arg-type]
    assert bodies == [r.value for r in records]


async def test_partition_key_is_the_record_key_and_headers_are_properties(
    namespace: MemoryNamespace, sink: EventHubSink
) -> None:
    records = [rec(i, key=f"user-{i % 5}") for i in range(25)]
    records.append(OutRecord("out", b"user-1", b"raw", [("bin", b"\xff\x00"), ("text", b"caf\xc3\xa9")]))
    assert all(d.ok for d in await sink.write(records))
    hub = namespace.hubs["out"]
    for key in {f"user-{i}" for i in range(5)}:
        where = {
            i
            for i, p in enumerate(hub.partitions)
            for e in p
            if e.message.message_annotations[KEY] in (key, key.encode())
        }
        assert where == {hub.partition_for(key)}, f"{key} spread over partitions {where}"
    last = next(e.message for e in hub.partitions[hub.partition_for("user-1")] if b"".join(e.message.data) == b"raw")  # type: ignore[arg-type]
    props = {k.decode() if isinstance(k, bytes) else k: v for k, v in last.application_properties.items()}
    assert props["bin"] == b"\xff\x00"
    assert props["text"] in ("café", "café".encode())


async def test_an_oversized_event_is_a_clear_non_retriable_reject(
    namespace: MemoryNamespace, sink: EventHubSink
) -> None:
    results = await sink.write([rec(0), rec(1, size=10_000), rec(2), rec(3, key=None, size=10_000, topic="dlq")])
    assert [d.ok for d in results] == [True, False, True, False]
    for bad in (results[1], results[3]):
        assert not bad.retriable
        assert "does not fit the event hub's limit of" in (bad.error or "")
    assert len([e for p in namespace.hubs["out"].partitions for e in p]) == 2


async def test_ok_only_after_the_send_completed(namespace: MemoryNamespace, sink: EventHubSink) -> None:
    namespace.send_gate = asyncio.Event()
    write = asyncio.create_task(sink.write([rec(0), rec(1)]))
    await asyncio.sleep(0.2)
    assert not write.done(), "answered before the service accepted the batch"
    namespace.send_gate.set()
    assert all(d.ok for d in await asyncio.wait_for(write, 5))


async def test_failed_sends_are_retriable_and_keep_key_order(namespace: MemoryNamespace, sink: EventHubSink) -> None:
    await sink.write([rec(0)])
    assert sink.ready()[0]
    # Two: EventHubProducerClient.send_batch itself tries once more with a new link.
    namespace.send_failures += [AMQPConnectionError(ErrorCondition.SocketError, description="reset")] * 2
    results = await sink.write([rec(i, size=400) for i in range(20)])
    assert not any(d.ok for d in results)
    assert all(d.retriable for d in results)
    assert "not sent: an earlier event with the same key failed" in (results[-1].error or "")
    assert not sink.ready()[0]
    assert all(d.ok for d in await sink.write([rec(i, size=400) for i in range(20)]))
    assert sink.ready()[0]


def test_classification() -> None:
    assert not classify(EventDataError("bad event")).retriable
    assert classify(EventDataSendError("service said no")).retriable


async def test_the_output_writer_over_event_hubs(namespace: MemoryNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Contract v1 in, events out: the writer built from OUTPUT_KIND=eventhubs settings, over HTTP."""
    import os
    import socket

    import aiohttp

    from streampod import ops
    from streampod.metrics import WriterMetrics
    from streampod.output_writer.server import create_app
    from streampod.output_writer.service import build_sink
    from streampod.settings import OutputWriterSettings, load

    for name in [n for n in os.environ if n.startswith("STREAMPOD_")]:
        monkeypatch.delenv(name)
    s = load(
        OutputWriterSettings,
        output_kind="eventhubs",
        output_topic="out",
        output_allowed_topics="dlq",
        eventhub_connection_string=CONN,
    )
    writer_sink = build_sink(s)
    await writer_sink.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = ops.server(create_app(s, writer_sink, WriterMetrics()), "127.0.0.1", sock.getsockname()[1])
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        body = {
            "messages": [
                {"id": "a", "key": "user-1", "value": {"n": 1}, "headers": {"traceparent": "00-1"}},
                {"id": "b", "key": "user-1", "value": "x" * 10_000, "encoding": "text"},
                {"id": "c", "key": None, "value": {"n": 3}, "topic": "dlq"},
            ]
        }
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/messages"
        async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
            assert resp.status == 200
            results = {r["id"]: r for r in (await resp.json())["results"]}
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()
        await writer_sink.close()
    assert results["a"]["status"] == "ok" and results["c"]["status"] == "ok"
    assert results["b"]["status"] == "reject" and "limit" in results["b"]["error"]
    out = [e for p in namespace.hubs["out"].partitions for e in p]
    assert len(out) == 1 and out[0].message.message_annotations[KEY] in ("user-1", b"user-1")
    assert len(namespace.hubs["dlq"].partitions[0]) == 1
