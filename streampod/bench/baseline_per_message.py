"""The per-message baseline, in the agogosml style: three processes, one HTTP POST per message.

- ``reader``: polls one message, POSTs its value to the app, and on 200 commits that message's
  offset synchronously; on anything else it waits and posts the same message again.
- ``app``: parses the JSON value, runs the shared transform, POSTs the result to the writer and
  answers with the writer's status.
- ``writer``: produces the body to the output topic and flushes the producer before it answers.

Standard library HTTP on both sides with keep-alive connections (so the baseline is not slowed by
connection set-up, only by its shape: one message per round trip, a flush and a commit each).
At-least-once: a message is committed only after the writer's broker acknowledged its output.

``python -m streampod.bench.baseline_per_message reader|app|writer ...``; SIGTERM stops each.
"""

from __future__ import annotations

import argparse
import http.client
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import urlsplit

from confluent_kafka import Consumer, Producer

from streampod.bench.signals import stop_event
from streampod.bench.transform import transform

KEY_HEADER = "X-Message-Key"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def handle_body(self, body: bytes, key: bytes | None) -> int:
        raise NotImplementedError

    def do_GET(self) -> None:  # /healthz for the harness
        self._answer(200)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        key = self.headers.get(KEY_HEADER)
        try:
            status = self.handle_body(body, None if key is None else key.encode())
        except Exception:
            status = 500
        self._answer(status)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """One line per request would be the benchmark's main cost."""


class _Poster:
    """One keep-alive connection to a URL, reopened after an error."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._host, self._port, self._path = (parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/")
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, key: bytes | None) -> int:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers[KEY_HEADER] = key.decode()
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
            self._conn.request("POST", self._path, body, headers)
            resp = self._conn.getresponse()
            resp.read()
            return resp.status
        except (OSError, http.client.HTTPException):
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return 503


def _serve(port: int, handler: type[_Handler]) -> int:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


def writer(port: int, bootstrap: str, topic: str) -> int:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 0, "log_level": 3}
    )
    lock = threading.Lock()

    class Writer(_Handler):
        def handle_body(self, body: bytes, key: bytes | None) -> int:
            failed: list[object] = []
            with lock:
                producer.produce(topic, body, key, on_delivery=lambda err, _m: failed.append(err) if err else None)
                left = producer.flush(30)
            return 200 if left == 0 and not failed else 503

    try:
        return _serve(port, Writer)
    finally:
        producer.flush(10)


def app(port: int, writer_url: str) -> int:
    local = threading.local()

    class App(_Handler):
        def handle_body(self, body: bytes, key: bytes | None) -> int:
            if not hasattr(local, "poster"):
                local.poster = _Poster(writer_url)
            poster: _Poster = local.poster
            return poster.post(transform(body), key)

    return _serve(port, App)


def reader(bootstrap: str, topic: str, group: str, app_url: str) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    stopping = stop_event()
    poster = _Poster(app_url)
    consumer.subscribe([topic])
    try:
        while not stopping.is_set():
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            while poster.post(msg.value() or b"", msg.key()) != 200:
                if stopping.is_set():
                    return 0  # not committed: read again by whoever comes next
                time.sleep(0.1)
            consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streampod.bench.baseline_per_message", description=__doc__)
    roles = p.add_subparsers(dest="role", required=True)
    w = roles.add_parser("writer")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--bootstrap", required=True)
    w.add_argument("--topic", required=True)
    a = roles.add_parser("app")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--writer-url", required=True)
    r = roles.add_parser("reader")
    r.add_argument("--bootstrap", required=True)
    r.add_argument("--topic", required=True)
    r.add_argument("--group", required=True)
    r.add_argument("--app-url", required=True)
    args = p.parse_args(argv)
    if args.role == "writer":
        return writer(args.port, args.bootstrap, args.topic)
    if args.role == "app":
        return app(args.port, args.writer_url)
    return reader(args.bootstrap, args.topic, args.group, args.app_url)


if __name__ == "__main__":
    sys.exit(main())
