"""Test your app's code with plain pytest: no broker, no network, no async.

``AppHarness`` loads your module exactly as the app container does, runs its ``setup()``, and
drives the REAL runtime in-process through HTTP contract v1: each ``send`` builds a real request
body from plain dicts and posts it to the runtime's ASGI app; outputs go to a ``MemoryForwarder``
(an output writer in memory) instead of a broker::

    from streampod.testing import AppHarness, assert_ok, assert_rejected

    def test_order():
        with AppHarness("app.py") as app:
            ok, bad = app.send([
                {"key": "u1", "value": {"user": "u1", "amount": 12.5, "currency": "EUR"}},
                {"key": "u2", "value": {"user": "u2", "amount": "lots", "currency": "EUR"}},
            ])
            assert_ok(ok)
            assert ok.outputs[0].value["amount_usd"] == 13.5
            assert_rejected(bad, contains="value.amount")

A record is a dict with ``value`` and optionally ``key``, ``headers``, ``encoding`` ("json" by
default; "text" or "base64" as a reader may send), ``id`` and ``source``; by default each gets a
source (topic "harness", partition 0, offset = its place in the batch). Each result says
``status`` ("ok", "retry" or "reject"), ``error`` and the ``outputs`` the output writer received
for it (``value`` decoded, ``key``, ``headers``, ``topic``). ``app.forwarder`` can be told to
answer otherwise (``answer("retry")``, ``unavailable()``) to see what your app then answers;
``app.post(body)`` sends a raw body and returns the HTTP status and the reply.

``replay(app, records)`` goes one step further: it runs the three real processes (input reader,
app, output writer) over a JSON-lines file, as ``streampod run --input file:...`` does, and gives
back what reached the output file and the dead-letter file, with each dead letter's reason::

    result = replay("app.py", [{"key": "u8", "value": {"amount": "a lot"}}])
    assert_dead_lettered(result.dead_letters, contains="value.amount")
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from streampod import contract
from streampod.app._forward import Forwarded, MemoryForwarder
from streampod.app._loader import load_user_app
from streampod.app.server import create_app
from streampod.run import dead_letter_file, file_stage
from streampod.settings import AppSettings

__all__ = [
    "AppHarness",
    "Forwarded",
    "MemoryForwarder",
    "MessageResult",
    "Record",
    "Replayed",
    "asgi_request",
    "assert_dead_lettered",
    "assert_ok",
    "assert_rejected",
    "assert_retried",
    "replay",
]

_HARNESS_TOPIC = "harness"
_HARNESS_TIMESTAMP = 1_700_000_000_000


class _HarnessSettings(AppSettings):
    """AppSettings from arguments only: a test must not depend on the STREAMPOD_ variables around it."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *_: Any, **__: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


@dataclass
class MessageResult:
    """What the app answered for one input, and the outputs the output writer received for it."""

    id: str
    status: contract.Status
    error: str | None = None
    outputs: list[Forwarded] = field(default_factory=list)

    @property
    def value(self) -> Any:
        """The value of the only output (an AssertionError when there is not exactly one)."""
        assert len(self.outputs) == 1, f"{self.id}: expected one output, got {len(self.outputs)}"
        return self.outputs[0].value


class AppHarness:
    """The app container's runtime around your code, in-process, with an output writer in memory."""

    def __init__(
        self,
        app: str | Path,
        *,
        input_schema: str | Path | None = None,
        forwarder: MemoryForwarder | None = None,
        **settings: Any,
    ) -> None:
        """``app`` as STREAMPOD_APP_MODULE takes it; ``settings`` are AppSettings fields to change."""
        self.settings: AppSettings = _HarnessSettings(**settings)
        self.forwarder = forwarder if forwarder is not None else MemoryForwarder()
        schema = Path(input_schema) if input_schema is not None else self.settings.input_schema
        self.user = load_user_app(str(app), schema)
        self.app = create_app(self.user, settings=self.settings, forwarder=self.forwarder)
        # One loop for the harness's life: objects made by an async setup() stay usable.
        self._runner = asyncio.Runner()
        self._finalizer = weakref.finalize(self, self._runner.close)
        self._runner.run(self.user.run_setup(self.settings))

    @property
    def module(self) -> ModuleType:
        """Your module as loaded (to patch a dependency in a test)."""
        module: ModuleType = self.user.module
        return module

    def send(self, records: Iterable[Mapping[str, Any]]) -> list[MessageResult]:
        """Send the records as one batch; one result per record, in order."""
        return self._runner.run(self.asend(records))

    def send_one(self, value: Any, *, key: str | None = None, **fields: Any) -> MessageResult:
        """Send one record; its result."""
        return self.send([{"value": value, "key": key, **fields}])[0]

    def post(self, body: bytes) -> tuple[int, bytes]:
        """POST a raw body to /v1/messages; the HTTP status and the reply body."""
        status, _, reply = self._runner.run(asgi_request(self.app, "POST", contract.MESSAGES_PATH, body))
        return status, reply

    async def asend(self, records: Iterable[Mapping[str, Any]]) -> list[MessageResult]:
        """``send`` for tests that already run in an event loop."""
        wire = [_wire(i, r) for i, r in enumerate(records)]
        seen = len(self.forwarder.batches)
        status, _, reply = await asgi_request(
            self.app, "POST", contract.MESSAGES_PATH, orjson.dumps({"messages": wire})
        )
        if status != 200:
            raise AssertionError(f"the runtime answered {status}: {reply.decode(errors='replace')}")
        outputs: dict[str, list[Forwarded]] = {}
        for batch in self.forwarder.batches[seen:]:
            for out in batch:
                outputs.setdefault(out.input_id, []).append(out)
        return [
            MessageResult(r["id"], r["status"], r.get("error"), outputs.get(r["id"], []))
            for r in orjson.loads(reply)["results"]
        ]

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> AppHarness:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _wire(i: int, record: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(record, Mapping) or "value" not in record:
        raise TypeError(f"record {i}: expected a dict with a 'value', got {record!r:.80}")
    value = record["value"]
    encoding = record.get("encoding")
    if encoding is None:
        encoding = "base64" if isinstance(value, bytes) else "json"
    if encoding == "base64" and isinstance(value, bytes):
        value = base64.b64encode(value).decode("ascii")
    source = record.get(
        "source",
        {"system": "harness", "topic": _HARNESS_TOPIC, "partition": 0, "offset": i, "timestamp": _HARNESS_TIMESTAMP},
    )
    return {
        "id": record.get("id", f"m{i}"),
        "key": record.get("key"),
        "value": value,
        "encoding": encoding,
        "headers": dict(record.get("headers") or {}),
        "source": source,
    }


def _check(results: MessageResult | Sequence[MessageResult]) -> Sequence[MessageResult]:
    return [results] if isinstance(results, MessageResult) else results


def assert_ok(results: MessageResult | Sequence[MessageResult]) -> None:
    """Every result is ok."""
    for r in _check(results):
        assert r.status == "ok", f"{r.id}: expected ok, got {r.status}: {r.error}"


def assert_rejected(results: MessageResult | Sequence[MessageResult], contains: str | None = None) -> None:
    """Every result is a reject (dead-lettered), its reason containing ``contains``."""
    for r in _check(results):
        assert r.status == "reject", f"{r.id}: expected reject, got {r.status} ({r.error})"
        if contains is not None:
            assert contains in (r.error or ""), f"{r.id}: reject reason {r.error!r} lacks {contains!r}"


def assert_retried(results: MessageResult | Sequence[MessageResult], contains: str | None = None) -> None:
    """Every result is a retry, its reason containing ``contains``."""
    for r in _check(results):
        assert r.status == "retry", f"{r.id}: expected retry, got {r.status} ({r.error})"
        if contains is not None:
            assert contains in (r.error or ""), f"{r.id}: retry reason {r.error!r} lacks {contains!r}"


_DEAD_LETTER_REASON = "streampod-error"


@dataclass
class Record:
    """One line of a replay's output or dead-letter file: ``value`` decoded as it was written."""

    key: str | None
    value: Any
    headers: dict[str, str]
    topic: str | None = None

    @property
    def reason(self) -> str | None:
        """A dead letter's reason (the ``streampod-error`` header); None for an output."""
        return self.headers.get(_DEAD_LETTER_REASON)


@dataclass
class Replayed:
    """What a replay wrote: outputs and dead letters, each in the order they were written."""

    outputs: list[Record]
    dead_letters: list[Record]
    workdir: Path


def replay(
    app: str | Path,
    records: Iterable[Mapping[str, Any]] | str | Path,
    *,
    workdir: str | Path | None = None,
    timeout: float = 120.0,
    **settings: Any,
) -> Replayed:
    """Run input reader, app and output writer as real processes over ``records``; what came out.

    ``records`` are dicts as ``AppHarness.send`` takes them (``key``, ``value``, ``headers``), or a
    JSON-lines file of them. ``settings`` are AppSettings fields for the app process (for example
    ``model_path=...``), passed as its STREAMPOD_ variables. Each process logs into ``workdir``.
    """
    env = _app_env(settings)
    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="streampod-replay-"))
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(records, (str, Path)):
        src = Path(records).resolve()
    else:
        src = folder / "input.jsonl"
        src.write_bytes(b"".join(orjson.dumps(dict(r)) + b"\n" for r in records))
    dst = folder / "output.jsonl"
    stage = file_stage(folder, str(app), src, dst, app_env=env)
    try:
        stage.start(timeout, may_finish=("input-reader",))
        code = stage["input-reader"].wait(timeout)
    finally:
        codes = stage.stop()
    if code is None or any(c != 0 for c in codes.values()):
        raise AssertionError(f"the replay did not finish cleanly (exit codes {codes}):\n{stage.logs()}")
    return Replayed(_read_records(dst), _read_records(dead_letter_file(dst)), folder)


def _app_env(settings: Mapping[str, Any]) -> dict[str, str]:
    unknown = set(settings) - set(AppSettings.model_fields)
    if unknown:
        raise TypeError(f"not AppSettings fields: {sorted(unknown)}")
    return {f"STREAMPOD_{name.upper()}": str(value) for name, value in settings.items()}


def _read_records(path: Path) -> list[Record]:
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        row = orjson.loads(line)
        value = row.get("value")
        if row.get("encoding") == "base64" and value is not None:
            value = base64.b64decode(value)
        out.append(Record(row.get("key"), value, row.get("headers") or {}, row.get("topic")))
    return out


def assert_dead_lettered(dead_letters: Record | Sequence[Record], contains: str | None = None) -> None:
    """Every record is a dead letter (it has a reason), the reason containing ``contains``."""
    records = [dead_letters] if isinstance(dead_letters, Record) else dead_letters
    assert records, "expected dead letters, got none"
    for r in records:
        assert r.reason is not None, f"key {r.key}: not a dead letter (no {_DEAD_LETTER_REASON} header)"
        if contains is not None:
            assert contains in r.reason, f"key {r.key}: dead-letter reason {r.reason!r} lacks {contains!r}"


async def asgi_request(
    app: Any,
    method: str,
    path: str,
    body: bytes | Sequence[bytes] = b"",
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Call an ASGI app directly, as a server would; the status, headers and body of the reply.

    ``body`` as a list of chunks is sent without Content-Length, as a chunked upload is.
    """
    chunks = [body] if isinstance(body, bytes) else list(body)
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if isinstance(body, bytes):
        raw_headers.append((b"content-length", str(len(body)).encode()))
    raw_headers.append((b"content-type", b"application/json"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    done = asyncio.Event()
    status = 0
    reply_headers: dict[str, str] = {}
    reply: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(event: dict[str, Any]) -> None:
        nonlocal status
        if event["type"] == "http.response.start":
            status = event["status"]
            reply_headers.update((k.decode(), v.decode()) for k, v in event.get("headers", []))
        elif event["type"] == "http.response.body":
            reply.append(event.get("body", b""))
            if not event.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    done.set()
    return status, reply_headers, b"".join(reply)
