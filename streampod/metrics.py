"""Prometheus metrics of each container, each set in its own registry (no process-global state)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def container_registry() -> CollectorRegistry:
    """A registry with the process's own numbers (CPU, RSS, open files, the collector), as the default one has.

    They size a container's limits and show whether the collector is busy (streampod.ops.tune_gc).
    """
    r = CollectorRegistry()
    ProcessCollector(registry=r)
    PlatformCollector(registry=r)
    GCCollector(registry=r)
    return r


class ReaderMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or container_registry()
        r = self.registry
        self.messages_in = Counter("streampod_reader_messages_in", "Messages read from the source", registry=r)
        self.messages_ok = Counter("streampod_reader_messages_ok", "Messages the app answered ok for", registry=r)
        self.messages_retried = Counter(
            "streampod_reader_messages_retried", "Message deliveries tried again", ["reason"], registry=r
        )
        self.messages_rejected = Counter("streampod_reader_messages_rejected", "Messages the app rejected", registry=r)
        self.dead_lettered = Counter(
            "streampod_reader_messages_dead_lettered",
            "Messages sent to the dead-letter destination",
            ["stage"],
            registry=r,
        )
        self.batch_retries = Counter(
            "streampod_reader_batch_retries", "Whole batches tried again", ["error"], registry=r
        )
        self.batch_seconds = Histogram(
            "streampod_reader_batch_seconds",
            "Time from sending a batch to its answer",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "streampod_reader_batch_messages",
            "Messages per request to the app (batch mode; batches of several partitions may share one)",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
            registry=r,
        )
        self.in_flight = Gauge("streampod_reader_in_flight_messages", "Messages read and not yet answered", registry=r)
        self.paused = Gauge("streampod_reader_paused_partitions", "Partitions paused for backpressure", registry=r)
        self.lag = Gauge(
            "streampod_reader_consumer_lag",
            "Messages behind the partition end",
            ["topic", "partition"],
            registry=r,
        )
        self.commit_seconds = Histogram(
            "streampod_reader_commit_seconds", "Time to commit offsets", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.commits = Counter("streampod_reader_commits", "Offset commits", ["result"], registry=r)


class AppMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or container_registry()
        r = self.registry
        self.messages = Counter("streampod_app_messages", "Messages answered, by status", ["status"], registry=r)
        self.outputs = Counter("streampod_app_outputs", "Outputs forwarded to the output writer", registry=r)
        self.batch_seconds = Histogram(
            "streampod_app_batch_seconds", "Time to answer a batch", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.process_seconds = Histogram(
            "streampod_app_process_seconds",
            "Time in the user's code per batch",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.forward_seconds = Histogram(
            "streampod_app_forward_seconds",
            "Time for the output writer to answer",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.bad_requests = Counter("streampod_app_bad_requests", "Requests answered 4xx", ["status"], registry=r)
        self.in_flight = Gauge("streampod_app_in_flight_batches", "Batches being processed", registry=r)


class WriterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or container_registry()
        r = self.registry
        self.messages = Counter("streampod_writer_messages", "Messages answered, by status", ["status"], registry=r)
        self.delivery_seconds = Histogram(
            "streampod_writer_batch_seconds",
            "Time from receiving a batch to the last delivery report",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.bad_requests = Counter("streampod_writer_bad_requests", "Requests answered 4xx", ["status"], registry=r)
        self.unavailable = Counter("streampod_writer_unavailable", "Batches answered 503", registry=r)
        self.broker_up = Gauge("streampod_writer_broker_up", "1 while the destination is reachable", registry=r)
        self.in_flight = Gauge("streampod_writer_in_flight_messages", "Messages awaiting a delivery report", registry=r)
