"""Kafka input: a confluent-kafka consumer in a consumer group, driven from one thread.

Every call into the consumer (consume, pause, resume, commit, close) runs on one dedicated
thread: librdkafka calls the rebalance callbacks from inside ``consume``, and keeping all calls
on that thread means a commit can never race a revocation. The event loop asks for pauses,
resumes and commits without waiting; the thread applies them before its next ``consume``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streampod.kafka.message import KafkaMessage
from streampod.metrics import ReaderMetrics
from streampod.source import InRecord, PartitionId, PartitionListener, Source

log = logging.getLogger(__name__)

#: After the first record of a fetch, how long the poll waits for the rest of it: librdkafka queues a
#: fetch's partitions one after another, and taken at once, a fetch over four partitions went out as
#: one request and a part (66 requests a second at 1,000 msgs/s instead of 47, docs/benchmark.md).
_REST_OF_FETCH_S = 0.002

#: Records librdkafka prefetches before it stops fetching (``queued.min.messages``). It counts the whole
#: consumer queue, not one partition's, and a fetch already in flight lands on top (1 MB a partition).
_PREFETCH_RECORDS = 10_000

#: How long a rebalance callback may wait for the event loop to settle the revoked partitions.
_REVOKE_GRACE_S = 5.0


def consumer_config(
    connection: Mapping[str, str],
    group: str,
    auto_offset_reset: str,
    instance_id: str | None = None,
    *,
    batch_wait_ms: int = 20,
    batch_max_bytes: int = 524_288,
) -> dict[str, Any]:
    static = {"group.instance.id": instance_id} if instance_id else {}
    return {
        # Tuning defaults, below the user's extra config in ``connection``.
        "statistics.interval.ms": 5000,
        # Bound librdkafka's own prefetch, so a paused partition holds little memory: 16 MB, and
        # _PREFETCH_RECORDS records (librdkafka's 100,000 held ≈ 35 MB more in the reader at 100 B,
        # for nothing: the reader itself holds up to STREAMPOD_MAX_BUFFERED_MESSAGES).
        "queued.max.messages.kbytes": 16384,
        "queued.min.messages": _PREFETCH_RECORDS,
        # Once the prefetch is full, librdkafka looks at a partition again after this long (1 s by
        # default). The bounds count the whole queue, so a partition resumed after a pause waited out
        # the second behind the other partitions' records: drains of 100 B ran at 25-28 k msgs/s with
        # the default, 35-41 k with this (docs/benchmark.md). Below a backlog the queue never fills.
        "fetch.queue.backoff.ms": batch_wait_ms,
        # The broker holds a fetch until a batch's worth of bytes is there or the batch wait is over,
        # instead of answering as soon as any record is: below a backlog that was a fetch for every
        # produce request upstream, and at 1,000 msgs/s the reader's and the broker's CPU fell by a
        # third with it (docs/benchmark.md). The poll hands on what a fetch brings at once.
        "fetch.wait.max.ms": batch_wait_ms,
        "fetch.min.bytes": batch_max_bytes,
        **connection,
        # What the delivery rules rest on; settings refuse these in extra config.
        **static,
        "group.id": group,
        # Offsets are committed by the reader, only for what the app has answered for.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": auto_offset_reset,
        # Cooperative rebalancing moves only the partitions that change owner.
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.partition.eof": False,
    }


def _header_bytes(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""


# One PartitionId per partition seen, shared by its records: building a NamedTuple per record
# cost more than the lookup.
_partition_ids: dict[tuple[str, int], PartitionId] = {}


def _partition_id(topic: str, partition: int) -> PartitionId:
    pid = _partition_ids.get((topic, partition))
    if pid is None:
        pid = _partition_ids[(topic, partition)] = PartitionId(topic, partition)
    return pid


def to_record(msg: KafkaMessage) -> InRecord:
    ts_type, ts = msg.timestamp()
    raw = msg.headers()
    headers = None
    if raw:
        pairs = raw.items() if isinstance(raw, dict) else raw
        headers = [(k, _header_bytes(v)) for k, v in pairs]
    return InRecord(
        _partition_id(msg.topic() or "", msg.partition() or 0),
        msg.offset() or 0,
        msg.key(),
        msg.value(),
        headers,
        ts if ts_type != 0 else None,
    )


class KafkaSource(Source):
    system = "kafka"

    def __init__(
        self,
        config: dict[str, Any],
        topics: Sequence[str],
        metrics: ReaderMetrics,
        revoke_timeout_s: float = 20.0,
    ) -> None:
        self._config = config
        self._topics = list(topics)
        self._metrics = metrics
        self._revoke_timeout_s = revoke_timeout_s
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-consumer")
        self._lock = threading.Lock()
        self._to_pause: set[PartitionId] = set()
        self._to_resume: set[PartitionId] = set()
        self._to_commit: dict[PartitionId, int] = {}
        # Touched only on the consumer thread:
        self._assigned: set[PartitionId] = set()
        self._committed: dict[PartitionId, int] = {}
        self._lag: dict[PartitionId, int] = {}
        self._brokers_down = False
        self._consumer: Consumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: PartitionListener | None = None

    async def start(self, listener: PartitionListener) -> None:
        self._loop = asyncio.get_running_loop()
        self._listener = listener
        await self._loop.run_in_executor(self._thread, self._create)

    def _create(self) -> None:
        conf = {**self._config, "error_cb": self._on_error, "stats_cb": self._on_stats}
        self._consumer = Consumer(conf)
        self._consumer.subscribe(
            self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    # -- rebalance callbacks: on the consumer thread, inside consume() ----------------------------

    def _on_assign(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        pids = [PartitionId(tp.topic, tp.partition) for tp in partitions]
        self._assigned.update(pids)
        self._call_loop(self._notify_assigned(pids))

    async def _notify_assigned(self, pids: list[PartitionId]) -> None:
        assert self._listener is not None
        self._listener.on_assigned(pids)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        pids = [PartitionId(tp.topic, tp.partition) for tp in partitions]
        assert self._listener is not None
        try:
            final = self._call_loop(self._listener.on_revoked(pids), self._revoke_timeout_s + _REVOKE_GRACE_S)
        except Exception:
            log.exception("settling revoked partitions failed; committing nothing more for them")
            final = {}
        # Still the owner inside this callback: the last chance to commit what was answered for.
        self._commit_now(consumer, {p: o for p, o in final.items() if p in self._assigned})
        self._forget(pids)

    def _on_lost(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        pids = [PartitionId(tp.topic, tp.partition) for tp in partitions]
        self._forget(pids)
        self._call_loop(self._notify_lost(pids))

    async def _notify_lost(self, pids: list[PartitionId]) -> None:
        assert self._listener is not None
        self._listener.on_lost(pids)

    def _forget(self, pids: Sequence[PartitionId]) -> None:
        self._assigned.difference_update(pids)
        with self._lock:
            for p in pids:
                self._to_commit.pop(p, None)
                self._to_pause.discard(p)
                self._to_resume.discard(p)
                self._lag.pop(p, None)

    def _call_loop(self, coro: Any, timeout: float = 30.0) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down = True
        log.warning("kafka consumer error", extra={"error": err.str(), "fatal": err.fatal()})

    def _on_stats(self, stats_json: str) -> None:
        stats = orjson.loads(stats_json)
        lag = {}
        for topic, t in stats.get("topics", {}).items():
            for part, p in t.get("partitions", {}).items():
                pid = PartitionId(topic, int(part))
                if pid in self._assigned and p.get("consumer_lag", -1) >= 0:
                    lag[pid] = p["consumer_lag"]
        self._lag = lag

    # -- the poll job: everything the loop asked for, then one consume ---------------------------

    async def poll(self, max_records: int, timeout_s: float) -> list[InRecord]:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._thread, self._poll_job, max_records, timeout_s)

    def _poll_job(self, max_records: int, timeout_s: float) -> list[InRecord]:
        consumer = self._consumer
        assert consumer is not None
        self._apply_flow_control(consumer)
        with self._lock:
            commits, self._to_commit = self._to_commit, {}
        if commits:
            self._commit_now(consumer, {p: o for p, o in commits.items() if p in self._assigned})
        msgs = consumer.consume(max_records, 0)
        if not msgs:
            # Nothing queued: wait for the next fetch (which the broker held to fill it) and take what
            # it brought, rather than waiting out ``timeout_s`` a second time on top of the broker's wait.
            msgs = consumer.consume(1, timeout_s)
            if msgs and max_records > 1:
                msgs += consumer.consume(max_records - 1, _REST_OF_FETCH_S)
        records = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                log.warning("kafka consume error", extra={"error": err.str()})
                continue
            rec = to_record(m)
            # Records fetched before a revocation in this same call belong to the new owner now.
            if rec.partition in self._assigned:
                records.append(rec)
        if msgs:
            self._brokers_down = False
        return records

    def _apply_flow_control(self, consumer: Consumer) -> None:
        with self._lock:
            pause, self._to_pause = self._to_pause & self._assigned, set()
            resume, self._to_resume = self._to_resume & self._assigned, set()
        if pause:
            consumer.pause([TopicPartition(p.topic, p.partition) for p in pause])
            log.info("partitions paused: the app is slower than the input", extra={"partitions": len(pause)})
        if resume:
            consumer.resume([TopicPartition(p.topic, p.partition) for p in resume])

    def _commit_now(self, consumer: Consumer, offsets: Mapping[PartitionId, int]) -> None:
        offsets = {p: o for p, o in offsets.items() if self._committed.get(p) != o}
        if not offsets:
            return
        tps = [TopicPartition(p.topic, p.partition, o) for p, o in offsets.items()]
        start = time.perf_counter()
        try:
            consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            self._metrics.commits.labels(result="failed").inc()
            log.warning("commit failed; will retry with the next commit", extra={"error": str(exc)})
            return
        self._metrics.commit_seconds.observe(time.perf_counter() - start)
        self._metrics.commits.labels(result="ok").inc()
        self._committed.update(offsets)

    # -- requests from the event loop: never block -----------------------------------------------

    def pause(self, partitions: Sequence[PartitionId]) -> None:
        with self._lock:
            self._to_pause.update(partitions)
            self._to_resume.difference_update(partitions)

    def resume(self, partitions: Sequence[PartitionId]) -> None:
        with self._lock:
            self._to_resume.update(partitions)
            self._to_pause.difference_update(partitions)

    def request_commit(self, offsets: Mapping[PartitionId, int]) -> None:
        with self._lock:
            self._to_commit.update(offsets)

    def committed(self, partition: PartitionId) -> int | None:
        return self._committed.get(partition)

    def lag(self) -> Mapping[PartitionId, int]:
        return dict(self._lag)

    def ready(self) -> tuple[bool, str]:
        if self._consumer is None:
            return False, "consumer not started"
        if self._brokers_down:
            return False, "all brokers down"
        return True, f"{len(self._assigned)} partition(s) assigned"

    async def close(self, final_offsets: Mapping[PartitionId, int]) -> None:
        assert self._loop is not None
        await self._loop.run_in_executor(self._thread, self._close_job, dict(final_offsets))
        self._thread.shutdown(wait=True)

    def _close_job(self, final_offsets: dict[PartitionId, int]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        self._commit_now(consumer, {p: o for p, o in final_offsets.items() if p in self._assigned})
        # Leaves the group at once (revoking through _on_revoke) instead of waiting for a session timeout.
        consumer.close()
        self._consumer = None
