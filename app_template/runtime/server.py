"""The app container's contract endpoint: ``POST /v1/messages`` in front of the user's code.

For a batch: read the body within ``max_body_bytes`` (413 past it), parse it (400 with the
reason when malformed), run the user's code, forward ALL outputs of the batch to the output
writer in ONE batch and wait for its answer, then answer each input: ``ok`` only when every
output of it is ok. A writer that cannot be reached (or sheds load) makes the whole batch 503, so
the reader waits and sends it again; a writer failing otherwise makes it 502.

Settings, forwarder, user code and metrics come through ``Depends`` providers reading
``app.state``, so a test can swap any of them with ``app.dependency_overrides``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from streampod import contract
from streampod.errors import ContractError, DeliveryError, PeerUnavailable
from streampod.metrics import AppMetrics
from streampod.settings import AppSettings

from ._forward import Forwarder, forward
from ._loader import UserApp
from ._process import Outcome, OutRecord, Placement, run_user_code

log = logging.getLogger(__name__)

_READY_INTERVAL_S = 1.0


class BodyTooLarge(ContractError):
    """Raised when a request body passes ``max_body_bytes`` (answered 413)."""


# The providers are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a worker
# thread, which made four thread hops per request (py-spy showed them on every request).
async def get_settings(request: Request) -> AppSettings:
    settings: AppSettings = request.app.state.settings
    return settings


async def get_forwarder(request: Request) -> Forwarder:
    forwarder: Forwarder = request.app.state.forwarder
    return forwarder


async def get_user_app(request: Request) -> UserApp:
    user: UserApp = request.app.state.user
    return user


async def get_metrics(request: Request) -> AppMetrics:
    metrics: AppMetrics = request.app.state.metrics
    return metrics


def create_app(
    user: UserApp,
    *,
    settings: AppSettings,
    forwarder: Forwarder,
    metrics: AppMetrics | None = None,
) -> FastAPI:
    """The contract app (no docs pages: this port talks only to the input reader)."""
    app = FastAPI(title="streampod app", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.forwarder = forwarder
    app.state.user = user
    app.state.metrics = metrics or AppMetrics()
    # How many batches the user's code works on at once: 1 keeps code that is not thread-safe safe.
    app.state.gate = asyncio.Semaphore(settings.app_concurrency)
    # Sync batches run inline one at a time on the loop: only where the user's code takes one at a time
    # anyway. Async code is on the loop already.
    inline = settings.app_concurrency == 1 and settings.app_inline_ms > 0 and not user.is_async
    app.state.placement = Placement(settings.app_inline_ms / 1000) if inline else None

    @app.post(contract.MESSAGES_PATH)
    async def post_messages(
        request: Request,
        settings: Annotated[AppSettings, Depends(get_settings)],
        forwarder: Annotated[Forwarder, Depends(get_forwarder)],
        user: Annotated[UserApp, Depends(get_user_app)],
        metrics: Annotated[AppMetrics, Depends(get_metrics)],
    ) -> Response:
        started = time.perf_counter()
        metrics.in_flight.inc()
        try:
            try:
                batch = contract.parse_batch(await _read_body(request, settings.max_body_bytes))
            except BodyTooLarge as exc:
                metrics.bad_requests.labels("413").inc()
                return _error(413, str(exc))
            except ContractError as exc:
                metrics.bad_requests.labels("400").inc()
                return _error(400, str(exc))
            state = request.app.state
            return await _handle(batch, user, forwarder, metrics, state.gate, state.placement, settings.log_payloads)
        finally:
            metrics.in_flight.dec()
            metrics.batch_seconds.observe(time.perf_counter() - started)

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ContractError(f"malformed Content-Length {declared[:40]!r}") from None
        if size > limit:
            raise BodyTooLarge(f"body of {size} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    # Counted as it arrives: a chunked body without Content-Length is bounded too.
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, reason: str) -> Response:
    return Response(orjson.dumps({"error": reason}), status_code=status, media_type="application/json")


async def _handle(
    batch: Sequence[contract.Message | contract.RawMessage],
    user: UserApp,
    forwarder: Forwarder,
    metrics: AppMetrics,
    gate: asyncio.Semaphore,
    placement: Placement | None,
    log_payloads: bool,
) -> Response:
    t0 = time.perf_counter()
    async with gate:
        outcomes = await run_user_code(user, batch, log_payloads=log_payloads, placement=placement)
    t1 = time.perf_counter()
    metrics.process_seconds.observe(t1 - t0)
    records = [r for o in outcomes for r in o.outputs]
    answers: dict[str, contract.Result] = {}
    if records:
        try:
            answers = await forward(forwarder, records)
        except PeerUnavailable as exc:
            log.warning("output writer unavailable; batch answered 503", extra={"error": exc.reason})
            return _error(503, f"output writer unavailable: {exc.reason}")
        except DeliveryError as exc:
            log.warning("output writer failed; batch answered 502", extra={"error": exc.reason})
            return _error(502, f"output writer failed: {exc.reason}")
        metrics.forward_seconds.observe(time.perf_counter() - t1)
        metrics.outputs.inc(len(records))
    results = [_result(m.id, o, answers) for m, o in zip(batch, outcomes, strict=True)]
    for status, n in Counter(r["status"] for r in results).items():
        metrics.messages.labels(status).inc(n)
    return Response(orjson.dumps({"results": results}), media_type="application/json")


def _result(msg_id: str, outcome: Outcome, answers: dict[str, contract.Result]) -> dict[str, Any]:
    status, error = outcome.status, outcome.error
    if status == "ok":
        outputs = outcome.outputs
        if len(outputs) == 1 and answers[outputs[0].id].status == "ok":  # the common case: no loop
            return {"id": msg_id, "status": "ok"}
        status, error = _combine(outputs, answers)
    out: dict[str, Any] = {"id": msg_id, "status": status}
    if error is not None:
        out["error"] = error
    return out


def _combine(outputs: list[OutRecord], answers: dict[str, contract.Result]) -> tuple[contract.Status, str | None]:
    """An input is ok when every output is; a reject wins over a retry (retrying cannot help it)."""
    status: contract.Status = "ok"
    error = None
    for rec in outputs:
        answer = answers[rec.id]
        if answer.status == "reject":
            return "reject", f"output writer rejected output {rec.id}: {answer.error}"
        if answer.status == "retry" and status == "ok":
            status, error = "retry", f"output writer asked to retry output {rec.id}: {answer.error}"
    return status, error


class Readiness:
    """Ready when the user's setup() has run and the output writer can be reached.

    The writer check runs in the background once a second, so a probe only reads the cached state.
    """

    def __init__(self, user: UserApp, forwarder: Forwarder, interval_s: float = _READY_INTERVAL_S) -> None:
        self.user = user
        self.forwarder = forwarder
        self.interval_s = interval_s
        self._writer_reason: str | None = "output writer not checked yet"

    def __call__(self) -> tuple[bool, str]:
        if not self.user.setup_done:
            return False, "the app's setup() has not finished"
        if self._writer_reason is not None:
            return False, self._writer_reason
        return True, "ready"

    async def refresh(self) -> None:
        try:
            await self.forwarder.check()
        except DeliveryError as exc:
            self._writer_reason = exc.reason
        else:
            self._writer_reason = None

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
