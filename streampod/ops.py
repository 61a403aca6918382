"""What every container runs besides its work: the operations endpoints and the process lifecycle.

``/healthz`` answers while the event loop turns; ``/readyz`` asks the container whether it is
connected and able to work; ``/metrics`` is the container's own Prometheus registry. These are
served on their own port so that the kubelet and Prometheus can reach them while the contract
endpoints stay on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

#: Answers (ready, reason); the reason is shown when not ready.
Readiness = Callable[[], tuple[bool, str]]


def ops_app(registry: CollectorRegistry, readiness: Readiness) -> Starlette:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(_: Request) -> Response:
        ready, reason = readiness()
        return JSONResponse({"ready": ready, "reason": reason}, status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)])


class Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the process (several servers share one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def server(app: Any, host: str, port: int, *, lifespan: str = "off") -> Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan=lifespan,  # type: ignore[arg-type]
        timeout_graceful_shutdown=10,
        limit_concurrency=1000,
        backlog=256,
    )
    return Server(config)


async def serve(
    *servers: Server,
    until: asyncio.Event,
    on_started: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run the servers until ``until`` is set, then shut them down gracefully."""
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.01)
    failed = [t for t in tasks if t.done()]
    if failed:
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        raise SystemExit("a server could not start (is its port in use?)")
    if on_started is not None:
        await on_started()
    await until.wait()
    for s in servers:
        s.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop``: the container drains instead of dying mid-batch."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if stop.is_set():
        log.warning("second signal, exiting now", extra={"signal": sig.name})
        raise SystemExit(1)
    log.info("stopping", extra={"signal": sig.name})
    stop.set()


#: CPython's default collection thresholds; a process that changed them keeps its own.
_GC_DEFAULTS = (700, 10, 10)
#: Every message makes a few container objects that live for one batch (up to a few thousand per
#: batch). With the default 700, the collector ran thousands of times a minute and took about 30 %
#: of each service's CPU in a drain (docs/benchmark.md); almost all of those objects are freed by
#: reference counting anyway. Cyclic garbage still goes within 20,000 allocations: the stage's peak
#: RSS in a 1 KB drain was the same (297 MB) with 700 as with 20,000.
_GC_THRESHOLDS = (20_000, 20, 100)


def tune_gc() -> None:
    """Move what start-up made out of the collector's way, and collect less often.

    ``gc.freeze`` keeps the modules, classes and settings loaded so far (the bulk of the heap)
    out of every later full collection, which otherwise walks all of them again and again.
    """
    if gc.get_threshold() != _GC_DEFAULTS:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


#: How often free heap pages go back to the system; a trim of a 200 MB heap takes about 6 ms.
_TRIM_INTERVAL_S = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # a C library without it (musl): nothing to trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


@contextlib.contextmanager
def heap_trimmed(interval_s: float = _TRIM_INTERVAL_S) -> Generator[None, None, None]:
    """While inside, a thread hands glibc's free heap pages back to the system every ``interval_s``.

    A batch makes and frees thousands of objects in the main and worker-thread arenas; glibc
    gives memory back only from the top of a heap, so each arena's RSS stayed near its high-water
    mark. ``malloc_trim`` releases the whole free pages anywhere in every arena: in 1 KB drains of a
    million messages the stage's steady RSS fell from a median of 296 to 276 MB at no CPU that showed
    (docs/benchmark.md). It runs off the event loop so that the loop never waits on it.
    """
    trim = _malloc_trim()
    if trim is None:
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            trim(0)

    thread = threading.Thread(target=loop, name="heap-trim", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop where installed (it is, with uvicorn[standard]), the collector tuned
    and the heap trimmed."""
    tune_gc()
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency; this keeps odd platforms working
        factory = None
    with heap_trimmed(), asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
