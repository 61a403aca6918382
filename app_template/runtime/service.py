"""``streampod app``: the app container's process.

Start-up order: settings (a bad one: one line on stderr, exit 2), the user's module (a name that
cannot be found: exit 2; code that raises on import: exit 1), the user's ``setup()`` (raises:
exit 1), then the contract port and the ops port. SIGTERM stops accepting, lets in-flight batches
finish (their outputs forwarded and answered), and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from streampod import ops
from streampod.client import ContractClient
from streampod.errors import ConfigError
from streampod.logs import configure
from streampod.metrics import AppMetrics
from streampod.settings import AppSettings, load

from ._forward import HttpForwarder
from ._loader import UserApp, load_user_app
from .server import Readiness, create_app

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="streampod app", description="Serve the user's code behind HTTP contract v1.")
    parser.add_argument(
        "--app",
        metavar="MODULE",
        help='the code to serve: "module", "package.module:attribute" or a path to a .py file '
        "(overrides STREAMPOD_APP_MODULE)",
    )
    args = parser.parse_args(argv)
    overrides = {"app_module": args.app} if args.app else {}
    try:
        settings = load(AppSettings, **overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure("app", settings.log_level)
    try:
        user = load_user_app(settings.app_module, settings.input_schema)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:
        log.exception("the app's module raised while being imported", extra={"app": settings.app_module})
        print(f"cannot import the app {settings.app_module!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return ops.run(_serve(settings, user))


async def _serve(settings: AppSettings, user: UserApp) -> int:
    try:
        await user.run_setup(settings)
    except Exception as exc:
        log.exception("the app's setup() raised", extra={"app": user.name})
        print(f"the app's setup() failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    ops.stop_on_signals(stop)
    metrics = AppMetrics()
    url = settings.output_url
    async with ContractClient(str(url), timeout_s=settings.request_timeout_s) as client:
        forwarder = HttpForwarder(client, url.host or "127.0.0.1", url.port or 80)
        readiness = Readiness(user, forwarder)
        await readiness.refresh()
        app = create_app(user, settings=settings, forwarder=forwarder, metrics=metrics)
        servers = (
            ops.server(app, settings.app_host, settings.app_port),
            ops.server(ops.ops_app(metrics.registry, readiness), settings.ops_host, settings.ops_port),
        )

        async def started() -> None:
            log.info(
                "serving",
                extra={
                    "app": user.name,
                    "contract": f"{settings.app_host}:{settings.app_port}",
                    "ops": f"{settings.ops_host}:{settings.ops_port}",
                    "output_url": str(url),
                },
            )

        watcher = asyncio.create_task(readiness.watch(stop))
        try:
            await ops.serve(*servers, until=stop, on_started=started)
        finally:
            stop.set()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    log.info("stopped")
    return 0
