"""The output writer's HTTP surface: the real app on a real server, a real FileSink, no broker."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from fastapi import FastAPI

from streampod import ops
from streampod.file_sink import FileSink
from streampod.metrics import WriterMetrics
from streampod.output_writer import service
from streampod.output_writer.server import create_app, get_settings
from streampod.settings import OutputWriterSettings, load
from streampod.sink import Delivery, OutRecord, Sink

pytestmark = pytest.mark.timeout(60)

LIMIT = 2048


@dataclass
class Writer:
    url: str
    app: FastAPI
    sink: Sink
    metrics: WriterMetrics
    out: Path
    http: aiohttp.ClientSession

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for raw in self.out.read_bytes().splitlines()] if self.out.exists() else []

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        async with self.http.post(self.url + path, data=data, **kw) as resp:
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw else None


def settings(tmp_path: Path, **over: Any) -> OutputWriterSettings:
    base: dict[str, Any] = {
        "output_kind": "file",
        "output_file": tmp_path / "out.jsonl",
        "output_topic": "out",
        "output_allowed_topics": ("alt",),
        "max_body_bytes": LIMIT,
    }
    return load(OutputWriterSettings, **{**base, **over})


async def serve(app: FastAPI) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = ops.server(app, "127.0.0.1", port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


async def make_writer(tmp_path: Path, sink: Sink, started: bool = True) -> AsyncIterator[Writer]:
    s = settings(tmp_path)
    metrics = WriterMetrics()
    if started:
        await sink.start()
    app = create_app(s, sink, metrics)
    async for url in serve(app):
        async with aiohttp.ClientSession() as http:
            assert s.output_file is not None
            yield Writer(url, app, sink, metrics, s.output_file, http)
    await sink.close()


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    async for w in make_writer(tmp_path, FileSink(tmp_path / "out.jsonl")):
        yield w


def msg(mid: str, value: Any = None, **kw: Any) -> dict[str, Any]:
    return {"id": mid, "value": value, **kw}


async def test_a_batch_is_written_and_every_id_answered(writer: Writer) -> None:
    status, body = await writer.post(
        "/v1/messages",
        {
            "messages": [
                msg("a", {"amount": 12.5}, key="user-7", headers={"traceparent": "00-1"}),
                msg("b", "hello", encoding="text"),
                msg("c", "/w==", encoding="base64"),
                msg("d"),
            ]
        },
    )
    assert status == 200
    assert body == {"results": [{"id": i, "status": "ok"} for i in "abcd"]}
    assert writer.lines() == [
        {
            "topic": "out",
            "key": "user-7",
            "value": {"amount": 12.5},
            "encoding": "json",
            "headers": {"traceparent": "00-1"},
        },
        {"topic": "out", "key": None, "value": "hello", "encoding": "text", "headers": {}},
        {"topic": "out", "key": None, "value": "/w==", "encoding": "base64", "headers": {}},
        {"topic": "out", "key": None, "value": None, "encoding": "json", "headers": {}},
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"messages": [', "malformed batch"),
        (b"", "malformed batch"),
        (b'{"messages": {"id": "a"}}', "messages"),
        (b'{"messages": [{"id": 7, "value": 1}]}', "messages.0.id"),
        (b'{"messages": [{"id": "a", "encoding": "yaml"}]}', "messages.0.encoding"),
        (b'{"messages": [{"id": "a", "headers": {"h": 1}}]}', "messages.0.headers"),
        (b'{"messages": [{"id": "a"}, {"id": "a"}]}', "duplicate id 'a'"),
        (b'{"messages": [{"id": "\xff"}]}', "not UTF-8"),
        (b'{"messages": [{"id": "a", "value": ' + b"[" * 1000 + b"]" * 1000 + b"}]}", "nested too deeply"),
    ],
)
async def test_a_malformed_batch_is_400_with_the_reason_and_nothing_is_written(
    writer: Writer, body: bytes, reason: str
) -> None:
    status, reply = await writer.post("/v1/messages", body, headers={"Content-Type": "application/json"})
    assert status == 400
    assert reason in reply["error"]
    assert writer.lines() == []
    assert writer.metrics.bad_requests.labels(status="400")._value.get() == 1


async def test_a_declared_body_over_the_limit_is_413_before_it_is_read(writer: Writer) -> None:
    big = orjson.dumps({"messages": [msg("a", "x" * (LIMIT * 2), encoding="text")]})
    status, reply = await writer.post("/v1/messages", big)
    assert status == 413
    assert f"{len(big)} bytes is over the limit of {LIMIT}" in reply["error"]


async def test_a_streamed_body_over_the_limit_is_413(writer: Writer) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"messages": [{"id": "a", "encoding": "text", "value": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}]}'

    async with writer.http.post(writer.url + "/v1/messages", data=chunks()) as resp:
        assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert resp.status == 413
        assert "over the limit" in (await resp.json())["error"]
    # The server is still answering after refusing.
    status, _ = await writer.post("/v1/messages", {"messages": [msg("z", 1)]})
    assert status == 200


async def test_a_value_that_does_not_match_its_encoding_rejects_only_that_message(writer: Writer) -> None:
    status, body = await writer.post(
        "/v1/messages",
        {
            "messages": [
                msg("good", "aGk=", encoding="base64"),
                msg("bad64", "not base64!", encoding="base64"),
                msg("badtext", {"not": "a string"}, encoding="text"),
            ]
        },
    )
    assert status == 200
    assert body["results"] == [
        {"id": "good", "status": "ok"},
        {"id": "bad64", "status": "reject", "error": "value is not valid base64"},
        {"id": "badtext", "status": "reject", "error": "value must be a string for encoding 'text'"},
    ]
    assert [line["value"] for line in writer.lines()] == ["hi"]


async def test_a_named_topic_is_used_only_when_allowed(writer: Writer, tmp_path: Path) -> None:
    batch = {"messages": [msg("1", 1, topic="alt"), msg("2", 2, topic="elsewhere"), msg("3", 3)]}
    assert (await writer.post("/v1/messages", batch))[0] == 200
    assert [line["topic"] for line in writer.lines()] == ["alt", "out", "out"]

    # The settings come through a dependency, so a test (or an embedding) can swap them.
    writer.app.dependency_overrides[get_settings] = lambda: settings(
        tmp_path, output_topic="fallback", output_allowed_topics=("elsewhere",)
    )
    assert (await writer.post("/v1/messages", batch))[0] == 200
    assert [line["topic"] for line in writer.lines()[3:]] == ["fallback", "elsewhere", "fallback"]


async def test_single_message_mode_takes_key_topic_and_headers_from_http_headers(writer: Writer) -> None:
    status, body = await writer.post(
        "/v1/message",
        b"\x00\x01 raw bytes",
        headers={
            "streampod-key": "caf%C3%A9",
            "streampod-topic": "alt",
            "streampod-header-trace%20id": "a%20b%2Fc",
            "streampod-header-lang": "r",
        },
    )
    assert (status, body) == (200, {"status": "ok"})
    status, _ = await writer.post("/v1/message", b'{"json": true}', headers={"streampod-topic": "nope"})
    assert status == 200
    first, second = writer.lines()
    assert first["topic"] == "alt" and first["key"] == "café"
    assert first["headers"] == {"trace id": "a b/c", "lang": "r"}
    assert (first["value"], first["encoding"]) == ("\x00\x01 raw bytes", "text")
    assert second == {"topic": "out", "key": None, "value": {"json": True}, "encoding": "json", "headers": {}}


async def test_single_message_over_the_limit_is_413(writer: Writer) -> None:
    status, reply = await writer.post("/v1/message", b"x" * (LIMIT + 1))
    assert status == 413 and "over the limit" in reply["error"]
    assert writer.lines() == []


async def test_an_unavailable_destination_is_503_at_once(tmp_path: Path) -> None:
    # A FileSink that was never opened reports itself not ready, like a producer with no broker.
    async for w in make_writer(tmp_path, FileSink(tmp_path / "out.jsonl"), started=False):
        status, reply = await w.post("/v1/messages", {"messages": [msg("a", 1)]})
        assert status == 503 and "is not open" in reply["error"]
        async with w.http.post(w.url + "/v1/message", data=b"x") as resp:
            assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert w.metrics.unavailable._value.get() == 2
        assert w.lines() == []


class ScriptedSink(Sink):
    """Answers each record by its value: b"reject" → not retriable, b"retry" → retriable, else ok."""

    def __init__(self) -> None:
        self.written: list[OutRecord] = []

    async def start(self) -> None:
        pass

    async def write(self, records: Sequence[OutRecord]) -> list[Delivery]:
        self.written += records
        out = []
        for r in records:
            if r.value == b"reject":
                out.append(Delivery(False, "MSG_SIZE_TOO_LARGE: too big", retriable=False))
            elif r.value == b"retry":
                out.append(Delivery(False, "_MSG_TIMED_OUT: timed out"))
            else:
                out.append(Delivery(True))
        return out

    def ready(self) -> tuple[bool, str]:
        return True, "scripted"

    async def close(self) -> None:
        pass


async def test_delivery_failures_map_to_retry_and_reject(tmp_path: Path) -> None:
    sink = ScriptedSink()
    async for w in make_writer(tmp_path, sink):
        status, body = await w.post(
            "/v1/messages",
            {
                "messages": [
                    msg("1", "fine", encoding="text", headers={"h": "é"}),
                    msg("2", "retry", encoding="text"),
                    msg("3", "reject", encoding="text"),
                ]
            },
        )
        assert status == 200
        assert body["results"] == [
            {"id": "1", "status": "ok"},
            {"id": "2", "status": "retry", "error": "_MSG_TIMED_OUT: timed out"},
            {"id": "3", "status": "reject", "error": "MSG_SIZE_TOO_LARGE: too big"},
        ]
        # Passed as str: librdkafka writes it as UTF-8 (integration_tests/test_output_writer_kafka.py reads it back).
        assert sink.written[0].headers == [("h", "é")]
        assert (await w.post("/v1/message", b"retry"))[0] == 503
        status, reply = await w.post("/v1/message", b"reject")
        assert (status, reply) == (422, {"status": "reject", "error": "MSG_SIZE_TOO_LARGE: too big"})
        assert w.metrics.messages.labels(status="reject")._value.get() == 2


class GatedSink(ScriptedSink):
    """Holds every write until released, and records the order of events."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.events: list[str] = []

    async def write(self, records: Sequence[OutRecord]) -> list[Delivery]:
        self.entered.set()
        await self.release.wait()
        self.events.append("written")
        return await super().write(records)

    async def close(self) -> None:
        self.events.append("closed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_stopping_finishes_requests_in_flight_then_closes_the_sink(tmp_path: Path) -> None:
    port, ops_port = free_port(), free_port()
    s = settings(tmp_path, writer_port=port, ops_host="127.0.0.1", ops_port=ops_port)
    sink, stop = GatedSink(), asyncio.Event()
    serving = asyncio.create_task(service.serve(s, sink=sink, stop=stop))
    async with aiohttp.ClientSession() as http:
        for _ in range(500):
            try:
                async with http.get(f"http://127.0.0.1:{ops_port}/readyz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.01)

        async def post() -> tuple[int, Any]:
            body = orjson.dumps({"messages": [msg("a", 1)]})
            async with http.post(f"http://127.0.0.1:{port}/v1/messages", data=body) as resp:
                return resp.status, await resp.json()

        in_flight = asyncio.create_task(post())
        await asyncio.wait_for(sink.entered.wait(), 10)
        stop.set()
        await asyncio.sleep(0.3)
        assert not serving.done(), "the server stopped with a request in flight"
        sink.release.set()
        assert await asyncio.wait_for(in_flight, 10) == (200, {"results": [{"id": "a", "status": "ok"}]})
    assert await asyncio.wait_for(serving, 15) == 0
    assert sink.events == ["written", "closed"]
