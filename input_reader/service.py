"""``streampod input-reader``: wire settings to a source, the app and the dead-letter destination."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from streampod import logs, ops
from streampod.backoff import Backoff
from streampod.client import ContractClient
from streampod.errors import ConfigError
from streampod.file_sink import FileSink
from streampod.metrics import ReaderMetrics
from streampod.settings import InputReaderSettings, load
from streampod.sink import Sink
from streampod.source import Source

from .deadletter import DeadLetters
from .file_source import FileSource
from .reader import Reader, ReaderPolicy, poll_size
from .senders import BatchSender, Delivery, Sender, SingleSender

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="streampod input-reader", description=__doc__).parse_args(argv)
    try:
        settings = load(InputReaderSettings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logs.configure("input-reader", settings.log_level)
    return ops.run(serve(settings))


def build_source(s: InputReaderSettings, metrics: ReaderMetrics) -> Source:
    if s.input_kind == "file":
        assert s.input_file is not None
        return FileSource(s.input_file, follow=not s.exit_at_end)
    # Imported here: a reader loads only the SDK of its own input (a Kafka reader never the Azure SDK).
    if s.input_kind == "eventhubs":
        from .eventhubs_source import eventhub_source

        return eventhub_source(s, metrics)
    from .kafka_source import KafkaSource, consumer_config

    assert s.consumer_group is not None
    conf = consumer_config(
        s.librdkafka_config(),
        s.consumer_group,
        s.auto_offset_reset,
        s.group_instance_id,
        batch_wait_ms=s.batch_wait_ms,
        batch_max_bytes=s.batch_max_bytes,
    )
    return KafkaSource(conf, s.input_topics, metrics, revoke_timeout_s=s.drain_timeout_s)


def build_dead_letter_sink(s: InputReaderSettings) -> Sink:
    kind = s.dead_letter_sink
    if kind == "file":
        return FileSink(s.dead_letter_destination)
    # Imported here: a file-only reader never loads confluent-kafka, a Kafka one never the Azure SDK.
    if kind == "eventhubs":
        from streampod.eventhubs.sink import eventhub_sink

        return eventhub_sink(s, s.dead_letter_destination, send_timeout_s=30.0, name="dead-letter")
    from streampod.kafka.sink import KafkaSink

    return KafkaSink(s.kafka_producer_config(), name="dead-letter")


def policy(s: InputReaderSettings) -> ReaderPolicy:
    return ReaderPolicy(
        encoding=s.encoding,
        batch_max_messages=s.batch_max_messages,
        batch_max_bytes=s.batch_max_bytes,
        max_message_bytes=s.max_message_bytes,
        max_in_flight_batches=s.max_in_flight_batches,
        max_buffered_per_partition=s.max_buffered_per_partition,
        max_buffered_messages=s.max_buffered_messages,
        message_max_retries=s.message_max_retries,
        commit_interval_s=s.commit_interval_ms / 1000,
        drain_timeout_s=s.drain_timeout_s,
        poll_max_records=poll_size(s.batch_max_messages),
        poll_timeout_s=s.batch_wait_ms / 1000,
    )


async def serve(s: InputReaderSettings) -> int:
    metrics = ReaderMetrics()
    backoff = Backoff(s.retry_initial_backoff_ms / 1000, s.retry_max_backoff_ms / 1000)
    source = build_source(s, metrics)
    dlq_sink = build_dead_letter_sink(s)
    await dlq_sink.start()
    stop = asyncio.Event()
    ops.stop_on_signals(stop)
    async with ContractClient(
        str(s.app_url), timeout_s=s.request_timeout_s, max_connections=s.max_in_flight_batches * 2
    ) as client:
        sender: Sender = (
            BatchSender(client, max_messages=s.batch_max_messages, max_bytes=s.batch_max_bytes, metrics=metrics)
            if s.delivery_mode == "batch"
            else SingleSender(client, str(s.app_url))
        )
        delivery = Delivery(sender, backoff, s.retry_max_attempts, metrics)
        dead_letters = DeadLetters(dlq_sink, s.dead_letter_destination, source.system, backoff, metrics)
        reader = Reader(source, delivery, dead_letters, policy(s), metrics, backoff)

        def readiness() -> tuple[bool, str]:
            ok, why = source.ready()
            if ok and not delivery.app_reachable:
                return False, "app unreachable"
            return ok, why

        done = asyncio.Event()
        ops_server = ops.server(ops.ops_app(metrics.registry, readiness), s.ops_host, s.ops_port)
        serving = asyncio.create_task(ops.serve(ops_server, until=done))
        try:
            await reader.run(stop)
        finally:
            await dlq_sink.close()
            done.set()
            await serving
    log.info("input reader exited")
    return 0
