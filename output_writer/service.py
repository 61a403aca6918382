"""``streampod output-writer``: settings → a sink → the contract server and the operations server.

SIGTERM or SIGINT drains: both servers stop accepting, requests in flight finish (each waits for
its delivery reports), then the producer flushes and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from streampod import logs, ops
from streampod.errors import ConfigError
from streampod.metrics import WriterMetrics
from streampod.settings import OutputWriterSettings, load
from streampod.sink import Sink

from .server import create_app

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="streampod output-writer",
        description=__doc__,
        epilog="Configured by STREAMPOD_* environment variables: see `streampod config`.",
    ).parse_args(argv)
    try:
        settings = load(OutputWriterSettings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logs.configure("output-writer", settings.log_level)
    return ops.run(serve(settings))


def build_sink(s: OutputWriterSettings) -> Sink:
    # Imported here so that a writer needs only its own destination's extra ([kafka] or [eventhub]).
    if s.output_kind == "file":
        from streampod.file_sink import FileSink

        assert s.output_file is not None
        return FileSink(s.output_file)
    if s.output_kind == "eventhubs":
        from streampod.eventhubs.sink import eventhub_sink

        assert s.output_topic is not None
        return eventhub_sink(s, s.output_topic, send_timeout_s=s.delivery_timeout_ms / 1000, name="output-writer")
    from streampod.kafka.sink import KafkaSink

    return KafkaSink(s.kafka_producer_config(), delivery_timeout_ms=s.delivery_timeout_ms, linger_ms=s.linger_ms)


async def serve(s: OutputWriterSettings, *, sink: Sink | None = None, stop: asyncio.Event | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or until ``stop`` is set, when given), then drain and close."""
    metrics = WriterMetrics()
    sink = sink or build_sink(s)
    await sink.start()
    metrics.broker_up.set_function(lambda: 1.0 if sink.ready()[0] else 0.0)
    if stop is None:
        stop = asyncio.Event()
        ops.stop_on_signals(stop)
    contract = ops.server(create_app(s, sink, metrics), s.writer_host, s.writer_port)
    operations = ops.server(ops.ops_app(metrics.registry, sink.ready), s.ops_host, s.ops_port)

    async def started() -> None:
        log.info(
            "output writer serving",
            extra={
                "contract": f"{s.writer_host}:{s.writer_port}",
                "ops": f"{s.ops_host}:{s.ops_port}",
                "output": s.output_kind,
                "destination": str(s.output_file) if s.output_kind == "file" else s.output_topic,
            },
        )

    try:
        await ops.serve(contract, operations, until=stop, on_started=started)
    finally:
        await sink.close()
    log.info("output writer exited")
    return 0
