"""The output writer's contract endpoints: contract v1 batches, and one raw message per request.

A message is answered ``ok`` only after its delivery report; ``retry`` or ``reject`` carry the
sink's reason. While the sink says its destination is unreachable, every request is answered 503
at once, so that the chain backs off and retries instead of waiting out message timeouts here.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, cast
from urllib.parse import unquote, unquote_to_bytes

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from streampod.contract import (
    H_HEADER_PREFIX,
    H_KEY,
    H_TOPIC,
    MESSAGE_PATH,
    MESSAGES_PATH,
    parse_raw_batch,
    raw_value_to_bytes,
)
from streampod.errors import ContractError
from streampod.metrics import WriterMetrics
from streampod.settings import OutputWriterSettings
from streampod.sink import Delivery, OutRecord, Sink

_JSON = "application/json"


class Refused(Exception):
    """The whole request is answered ``status`` with ``{"error": reason}``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def get_settings(request: Request) -> OutputWriterSettings:
    """The settings the app was built with; tests swap them through ``app.dependency_overrides``.

    ``async`` so that FastAPI calls it on the event loop: a plain ``def`` runs in a worker thread.
    """
    return cast(OutputWriterSettings, request.app.state.settings)


Settings = Annotated[OutputWriterSettings, Depends(get_settings)]


def destination(topic: str | None, settings: OutputWriterSettings) -> str:
    """The topic a message names when the allow-list has it, else the default output topic."""
    if topic is not None and topic in settings.output_allowed_topics:
        return topic
    return settings.output_topic or ""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=_JSON, headers=headers)


def _status(d: Delivery) -> str:
    return "ok" if d.ok else "retry" if d.retriable else "reject"


def _result(message_id: str, d: Delivery) -> dict[str, Any]:
    if d.ok:
        return {"id": message_id, "status": "ok"}
    return {"id": message_id, "status": _status(d), "error": d.error}


def create_app(settings: OutputWriterSettings, sink: Sink, metrics: WriterMetrics) -> FastAPI:
    app = FastAPI(title="streampod output writer", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> Response:
        if exc.status == 503:
            metrics.unavailable.inc()
            return _json({"error": exc.reason}, 503, {"Retry-After": "1"})
        metrics.bad_requests.labels(status=str(exc.status)).inc()
        return _json({"error": exc.reason}, exc.status)

    def require_destination() -> None:
        up, why = sink.ready()
        if not up:
            raise Refused(503, f"destination unavailable: {why}")

    async def write(records: Sequence[OutRecord]) -> list[Delivery]:
        metrics.in_flight.inc(len(records))
        try:
            return await sink.write(records)
        finally:
            metrics.in_flight.dec(len(records))

    @app.post(MESSAGES_PATH)
    async def messages(request: Request, settings: Settings) -> Response:
        require_destination()
        body = await read_body(request, settings.max_body_bytes)
        started = time.perf_counter()
        try:
            batch = parse_raw_batch(body)
        except ContractError as exc:
            raise Refused(400, str(exc)) from None
        results: list[dict[str, Any]] = [{}] * len(batch)
        records: list[OutRecord] = []
        written: list[int] = []
        default = destination(None, settings)
        for i, m in enumerate(batch):
            try:
                value = raw_value_to_bytes(m.value, m.encoding)
            except ContractError as exc:
                results[i] = {"id": m.id, "status": "reject", "error": str(exc)}
                continue
            key = None if m.key is None else m.key.encode()
            # librdkafka writes a str header value as UTF-8 itself.
            headers = list(m.headers.items()) if m.headers else None
            topic = default if m.topic is None else destination(m.topic, settings)
            records.append(OutRecord(topic, key, value, headers))
            written.append(i)
        if records:
            for i, d in zip(written, await write(records), strict=True):
                results[i] = {"id": batch[i].id, "status": "ok"} if d.ok else _result(batch[i].id, d)
        for status, n in Counter(r["status"] for r in results).items():
            metrics.messages.labels(status=status).inc(n)
        metrics.delivery_seconds.observe(time.perf_counter() - started)
        return Response(orjson.dumps({"results": results}), media_type=_JSON)

    @app.post(MESSAGE_PATH)
    async def message(request: Request, settings: Settings) -> Response:
        """Single-message mode: the body is the value; key, topic and headers come as HTTP headers."""
        require_destination()
        value = await read_body(request, settings.max_body_bytes)
        started = time.perf_counter()
        h = request.headers
        key = h.get(H_KEY)
        topic = h.get(H_TOPIC)
        headers = [
            (unquote(name[len(H_HEADER_PREFIX) :]), unquote_to_bytes(v))
            for name, v in h.items()
            if name.startswith(H_HEADER_PREFIX)
        ]
        record = OutRecord(
            destination(None if topic is None else unquote(topic), settings),
            None if key is None else unquote_to_bytes(key),
            value,
            headers or None,
        )
        [d] = await write([record])
        metrics.messages.labels(status=_status(d)).inc()
        metrics.delivery_seconds.observe(time.perf_counter() - started)
        if d.ok:
            return _json({"status": "ok"})
        if d.retriable:
            metrics.unavailable.inc()
            return _json({"status": "retry", "error": d.error}, 503, {"Retry-After": "1"})
        metrics.bad_requests.labels(status="422").inc()
        return _json({"status": "reject", "error": d.error}, 422)

    return app
