"""The app container as a real process: ``python -m streampod app`` serving the template's app.py,
forwarding to a small real HTTP output writer written here with the standard library."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from streampod.ports import free_port

REPO = Path(__file__).resolve().parent.parent
TEMPLATE_APP = "app_template/python/app.py"


@dataclass
class Writer:
    """An output writer that records every batch it receives and answers ok for every output."""

    delay_s: float = 0.0
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    port: int = 0


@pytest.fixture
def writer() -> Iterator[Writer]:
    state = Writer()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            messages = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))["messages"]
            time.sleep(state.delay_s)
            state.batches.append(messages)
            reply = orjson.dumps({"results": [{"id": m["id"], "status": "ok"} for m in messages]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


@dataclass
class AppProcess:
    proc: subprocess.Popen[bytes]
    port: int
    ops_port: int
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ops_port}{path}", timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"app exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            try:
                status, body = self.get("/readyz")
            except OSError as exc:
                last = repr(exc)
            else:
                if status == 200:
                    return
                last = f"{status} {body}"
            time.sleep(0.1)
        raise AssertionError(f"app not ready within {timeout} s: {last}\n{self.log.read_text()[-2000:]}")


def app_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPOD_")}
    env.update(extra)
    return env


@pytest.fixture
def app_process(writer: Writer, tmp_path: Path) -> Iterator[AppProcess]:
    port, ops_port = free_port(), free_port()
    log = tmp_path / "app.log"
    env = app_env(
        STREAMPOD_APP_PORT=str(port),
        STREAMPOD_OPS_HOST="127.0.0.1",
        STREAMPOD_OPS_PORT=str(ops_port),
        STREAMPOD_OUTPUT_URL=f"http://127.0.0.1:{writer.port}",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streampod", "app", "--app", TEMPLATE_APP],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    app = AppProcess(proc, port, ops_port, log)
    try:
        app.wait_ready()
        yield app
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def post(port: int, messages: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session,
        session.post(f"http://127.0.0.1:{port}/v1/messages", data=orjson.dumps({"messages": messages})) as resp,
    ):
        return resp.status, orjson.loads(await resp.read())


def order(i: int, amount: Any, currency: str = "EUR") -> dict[str, Any]:
    return {
        "id": f"orders-1-{i}",
        "key": f"u{i}",
        "value": {"user": f"u{i}", "amount": amount, "currency": currency},
        "encoding": "json",
        "headers": {"traceparent": f"00-{i}"},
        "source": {"system": "kafka", "topic": "orders", "partition": 1, "offset": i, "timestamp": 1763800000000 + i},
    }


async def test_app_process_serves_forwards_and_drains(app_process: AppProcess, writer: Writer) -> None:
    status, reply = await post(app_process.port, [order(10, 12.5), order(11, "lots"), order(12, 2000, "USD")])
    assert status == 200
    results = {r["id"]: r for r in reply["results"]}
    assert results["orders-1-10"]["status"] == "ok"
    assert results["orders-1-11"]["status"] == "reject"
    assert "value.amount" in results["orders-1-11"]["error"]
    assert results["orders-1-12"]["status"] == "ok"

    assert len(writer.batches) == 1  # all outputs of the batch in one batch to the writer
    first, second = writer.batches[0]
    assert first["id"] == "orders-1-10:0" and first["key"] == "u10"
    assert first["value"] == {"user": "u10", "amount": 12.5, "currency": "EUR", "amount_usd": 13.5, "flagged": False}
    assert first["headers"] == {
        "traceparent": "00-10",
        "streampod-source": "orders/1/10@1763800000010",
    }
    assert second["value"]["flagged"] is True

    assert app_process.get("/healthz")[0] == 200
    assert app_process.get("/readyz")[0] == 200
    status, metrics = app_process.get("/metrics")
    assert status == 200
    assert 'streampod_app_messages_total{status="ok"} 2.0' in metrics
    assert 'streampod_app_messages_total{status="reject"} 1.0' in metrics
    # The process's own numbers, for sizing limits and watching the collector (see streampod.ops.tune_gc).
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_gc_collections_total"):
        assert name in metrics, name

    # SIGTERM while a batch waits for the writer: the batch is still answered, then exit 0.
    writer.delay_s = 1.0
    in_flight = asyncio.create_task(post(app_process.port, [order(13, 1)]))
    await asyncio.sleep(0.4)
    app_process.proc.send_signal(signal.SIGTERM)
    status, reply = await in_flight
    assert status == 200 and reply["results"][0]["status"] == "ok"
    assert await asyncio.to_thread(app_process.proc.wait, 20) == 0


def test_bad_setting_is_one_stderr_line_and_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streampod", "app", "--app", TEMPLATE_APP],
        cwd=REPO,
        env=app_env(STREAMPOD_APP_PORT="eighty"),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "STREAMPOD_APP_PORT" in lines[0], lines


def test_failing_setup_exits_1_with_the_reason(tmp_path: Path) -> None:
    app = tmp_path / "broken.py"
    app.write_text(
        "def setup():\n    raise RuntimeError('model file missing')\n\ndef process(m):\n    return m.value\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "streampod", "app", "--app", str(app)],
        cwd=REPO,
        env=app_env(STREAMPOD_APP_PORT=str(free_port()), STREAMPOD_OPS_PORT=str(free_port())),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "setup() failed: RuntimeError: model file missing" in proc.stderr.decode()
