"""The real ``streampod output-writer`` process against the real broker: what is posted is what arrives."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from pipeline_support import read_all

from streampod.localkafka import LocalKafka
from streampod.ports import free_port
from streampod.pytest_kafka import TopicFactory

pytestmark = pytest.mark.timeout(180)


@dataclass
class WriterProcess:
    proc: subprocess.Popen[bytes]
    url: str
    ops_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def get(self, http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
        async with http.get(self.ops_url + path) as resp:
            return resp.status, await resp.json()

    async def wait_ready(self, http: aiohttp.ClientSession, want: int, timeout_s: float = 30) -> Any:
        """Poll /readyz until it answers ``want``; the last answer, or an AssertionError with the log."""
        deadline = time.monotonic() + timeout_s
        last: Any = "no answer"
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"writer exited with {self.proc.returncode}:\n{self.output()}"
            try:
                status, body = await self.get(http, "/readyz")
                if status == want:
                    return body
                last = (status, body)
            except aiohttp.ClientConnectionError as exc:
                last = exc
            await asyncio.sleep(0.1)
        raise AssertionError(f"/readyz never answered {want} (last: {last}):\n{self.output()}")

    def stop(self, timeout_s: float) -> tuple[int | None, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s), time.monotonic() - started
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - started


@pytest.fixture
def start_writer(tmp_path: Path) -> Iterator[Any]:
    procs: list[WriterProcess] = []

    def start(env: dict[str, str]) -> WriterProcess:
        port, ops_port = free_port(), free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPOD_")}
        full = {**base, "STREAMPOD_WRITER_PORT": str(port), "STREAMPOD_OPS_PORT": str(ops_port), **env}
        log = tmp_path / f"writer-{len(procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streampod", "output-writer"], env=full, stdout=out, stderr=out
            )
        w = WriterProcess(proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops_port}", log)
        procs.append(w)
        return w

    yield start
    for w in procs:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(10)


def msg(mid: str, value: Any, **kw: Any) -> dict[str, Any]:
    return {"id": mid, "value": value, **kw}


@pytest.mark.kafka
async def test_posted_records_arrive_with_key_value_headers_and_topic(
    kafka_broker: LocalKafka, topic_factory: TopicFactory, start_writer: Any
) -> None:
    out, alt, other = topic_factory(prefix="out"), topic_factory(prefix="alt"), topic_factory(prefix="other")
    boot = kafka_broker.bootstrap_servers
    w = start_writer(
        {
            "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS": boot,
            "STREAMPOD_OUTPUT_TOPIC": out,
            "STREAMPOD_OUTPUT_ALLOWED_TOPICS": alt,
        }
    )
    async with aiohttp.ClientSession() as http:
        assert (await w.wait_ready(http, 200))["ready"] is True
        batch = {
            "messages": [
                msg("j", {"amount": 12.5}, key="user-7", headers={"traceparent": "00-abc", "lang": "é"}),
                msg("t", "plain text", encoding="text", key="user-8"),
                msg("b", "AP8=", encoding="base64", topic=alt),
                msg("o", [1, 2], topic=other),  # not in the allow-list: goes to the default topic
                msg("n", None, key="tombstone"),
                msg("bad", "***", encoding="base64"),
            ]
        }
        async with http.post(w.url + "/v1/messages", data=orjson.dumps(batch)) as resp:
            assert resp.status == 200, await resp.text()
            results = (await resp.json())["results"]
        assert [r["status"] for r in results] == ["ok"] * 5 + ["reject"]
        assert results[5] == {"id": "bad", "status": "reject", "error": "value is not valid base64"}

        headers = {"streampod-key": "caf%C3%A9", "streampod-topic": alt, "streampod-header-trace%20id": "x%2Fy"}
        async with http.post(w.url + "/v1/message", data=b"\x00raw", headers=headers) as resp:
            assert (resp.status, await resp.json()) == (200, {"status": "ok"})

        async with http.get(w.ops_url + "/metrics") as resp:
            text = await resp.text()
        assert 'streampod_writer_messages_total{status="ok"} 6.0' in text
        assert "streampod_writer_broker_up 1.0" in text

    got = read_all(boot, [out, alt, other], expected=6, timeout=30)
    by_value = {(o.topic, o.value): o for o in got}
    assert len(got) == 6, got
    j = by_value[(out, b'{"amount":12.5}')]
    assert j.key == "user-7" and j.headers == {"traceparent": b"00-abc", "lang": "é".encode()}
    assert by_value[(out, b"plain text")].key == "user-8"
    assert by_value[(alt, b"\x00\xff")].key is None
    assert by_value[(out, b"[1,2]")].key is None
    assert by_value[(out, None)].key == "tombstone"
    single = by_value[(alt, b"\x00raw")]
    assert single.key == "café" and single.headers == {"trace id": b"x/y"}
    assert not [o for o in got if o.topic == other]

    code, took = w.stop(timeout_s=15)
    assert code == 0, w.output()
    assert took < 5, f"SIGTERM took {took:.1f} s"
    assert "output writer exited" in w.output()


async def test_an_unreachable_broker_answers_503_and_readyz_503(start_writer: Any) -> None:
    w = start_writer(
        {
            "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens there
            "STREAMPOD_OUTPUT_TOPIC": "out",
            "STREAMPOD_DELIVERY_TIMEOUT_MS": "60000",
        }
    )
    async with aiohttp.ClientSession() as http:
        body = await w.wait_ready(http, 503)
        assert body["ready"] is False
        started = time.monotonic()
        batch = orjson.dumps({"messages": [msg("a", 1)]})
        async with http.post(w.url + "/v1/messages", data=batch) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            assert "destination unavailable" in (await resp.json())["error"]
        async with http.post(w.url + "/v1/message", data=b"x") as resp:
            assert resp.status == 503
        # At once, not after the 60 s message timeout.
        assert time.monotonic() - started < 5
        # Once librdkafka has tried, the reason names the connection failure.
        deadline = time.monotonic() + 15
        while "_TRANSPORT" not in body["reason"] and "_ALL_BROKERS_DOWN" not in body["reason"]:
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.2)
            _, body = await w.get(http, "/readyz")

    code, took = w.stop(timeout_s=15)
    assert code == 0, w.output()
    assert took < 5, f"SIGTERM took {took:.1f} s"


def test_config_errors_name_every_variable_on_one_line() -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPOD_")}
    env = {**base, "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "STREAMPOD_WRITER_PORT": "eighty"}
    proc = subprocess.run(
        [sys.executable, "-m", "streampod", "output-writer"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "STREAMPOD_WRITER_PORT" in lines[0] and "STREAMPOD_OUTPUT_TOPIC" in lines[0]
    assert proc.stdout == ""
