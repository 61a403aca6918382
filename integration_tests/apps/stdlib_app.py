"""An app that does not use streampod's runtime: the standard library only, speaking the contract.

It proves the sidecars rely on contract v1 and nothing else. Settings from the environment:
APP_PORT, OPS_PORT, OUTPUT_URL (the writer), MODE ("batch" or "single"), FAIL_SECONDS (answer 500
for this long after start, to test retries), DELAY_SECONDS (a slow app: sleep this long per
request). The transform adds ``"via": "stdlib"`` to the value.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.monotonic()
FAIL_SECONDS = float(os.environ.get("FAIL_SECONDS", "0"))
DELAY_SECONDS = float(os.environ.get("DELAY_SECONDS", "0"))
OUTPUT_URL = os.environ["OUTPUT_URL"].rstrip("/")
MODE = os.environ.get("MODE", "batch")


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return 503, str(exc).encode()


class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if time.monotonic() - STARTED < FAIL_SECONDS:
            self._answer(500, b'{"error": "warming up"}')
            return
        time.sleep(DELAY_SECONDS)
        if MODE == "batch":
            self._batch(body)
        else:
            self._single(body)

    def _batch(self, body: bytes) -> None:
        messages = json.loads(body)["messages"]
        outputs = []
        for m in messages:
            value = dict(m["value"], via="stdlib")
            outputs.append({"id": m["id"], "key": m["key"], "value": value, "encoding": "json"})
        status, reply = post(
            OUTPUT_URL + "/v1/messages",
            json.dumps({"messages": outputs}).encode(),
            {"Content-Type": "application/json"},
        )
        if status != 200:
            self._answer(503, reply)
            return
        self._answer(200, reply)  # the writer's results carry the same ids

    def _single(self, body: bytes) -> None:
        value = dict(json.loads(body), via="stdlib")
        headers = {"Content-Type": "application/octet-stream"}
        if "streampod-key" in self.headers:
            headers["streampod-key"] = self.headers["streampod-key"]
        status, reply = post(OUTPUT_URL + "/v1/message", json.dumps(value).encode(), headers)
        self._answer(200 if status == 200 else 503, reply)


class Ops(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


if __name__ == "__main__":
    ops = ThreadingHTTPServer(("127.0.0.1", int(os.environ["OPS_PORT"])), Ops)
    threading.Thread(target=ops.serve_forever, daemon=True).start()
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), App).serve_forever()
