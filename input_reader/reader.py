"""The input reader's engine: one lane per partition between a Source and the app.

Each lane sends one batch at a time, so order holds within a partition while partitions run in
parallel (up to STREAMPOD_MAX_IN_FLIGHT_BATCHES). A lane's commit point is the offset of its first
record not yet answered for, so a commit never passes a message that could still be lost. A lane
holding too many records pauses its partition; the consumer keeps polling, so it stays in its group.

The reader as a whole holds at most STREAMPOD_MAX_BUFFERED_MESSAGES: at that mark it stops taking
records from the source until a batch is answered, and the source's own prefetch (bounded) fills
up instead. That is the common case, a backlog on every partition, and it costs nothing, whereas a
pause makes librdkafka drop its prefetched records, fetched again after the resume, up to
``fetch.queue.backoff.ms`` later (the batch wait; docs/design.md). Only when the
mark has held for ``stall_pause_s`` (the app stuck, not slow) are the lanes that hold records
paused, so that polling, and with it the consumer's membership of its group, can go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streampod.backoff import Backoff
from streampod.contract import Encoding
from streampod.metrics import ReaderMetrics
from streampod.settings import InputReaderSettings
from streampod.source import HasLag, InRecord, PartitionId, Source

from .deadletter import DeadLetters
from .entries import OK, Entry, Outcome, make_entry
from .senders import Delivery

log = logging.getLogger(__name__)

#: While the reader is full: how often it looks at the stall deadline and at ``stop``.
_ROOM_CHECK_S = 0.1


def poll_size(batch_max_messages: int) -> int:
    """Records asked of the source per poll: at least a whole batch, so a full lane needs one poll."""
    return max(batch_max_messages, 100)


def _setting(name: str) -> Any:
    return InputReaderSettings.model_fields[name].default


_DEFAULT_ENCODING: Encoding = _setting("encoding")


@dataclass(frozen=True)
class ReaderPolicy:
    """The engine's knobs; the defaults are the settings' own (``service.policy`` maps them)."""

    encoding: Encoding = _DEFAULT_ENCODING
    batch_max_messages: int = _setting("batch_max_messages")
    batch_max_bytes: int = _setting("batch_max_bytes")
    max_message_bytes: int = _setting("max_message_bytes")
    max_in_flight_batches: int = _setting("max_in_flight_batches")
    max_buffered_per_partition: int = _setting("max_buffered_per_partition")
    max_buffered_messages: int = _setting("max_buffered_messages")
    stall_pause_s: float = 5.0
    message_max_retries: int = _setting("message_max_retries")
    commit_interval_s: float = _setting("commit_interval_ms") / 1000
    drain_timeout_s: float = _setting("drain_timeout_s")
    poll_max_records: int = poll_size(_setting("batch_max_messages"))
    poll_timeout_s: float = _setting("batch_wait_ms") / 1000


class Lane:
    """The records of one partition, from fetch to commit point."""

    def __init__(self, pid: PartitionId, reader: Reader) -> None:
        self.pid = pid
        self.reader = reader
        self.pending: deque[Entry] = deque()
        self.in_flight = 0
        self.commit_point: int | None = None
        #: One past the highest offset taken for sending; the commit point once nothing is pending.
        self.taken_high = 0
        self.paused = False
        #: Set: take no new batch (draining, or revoked); what is pending is given back.
        self.closing = False
        self.wakeup = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.task = asyncio.create_task(self._run(), name=f"lane-{pid.topic}-{pid.partition}")

    @property
    def buffered(self) -> int:
        return len(self.pending) + self.in_flight

    def add(self, entries: list[Entry]) -> None:
        """Take fetched entries of this partition, in offset order."""
        if self.commit_point is None:
            self.commit_point = entries[0].record.offset
        self.pending.extend(entries)
        self.wakeup.set()
        if self.buffered >= self.reader.policy.max_buffered_per_partition:
            self.pause()

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.reader.source.pause([self.pid])
            self.reader.metrics.paused.inc()

    def _take(self) -> list[Entry]:
        policy = self.reader.policy
        batch: list[Entry] = []
        size = 0
        while self.pending and len(batch) < policy.batch_max_messages:
            nxt = self.pending[0]
            if batch and size + nxt.size > policy.batch_max_bytes:
                break
            batch.append(self.pending.popleft())
            size += nxt.size
        return batch

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.pending and not self.closing:
                batch = self._take()
                self.in_flight = len(batch)
                self.idle.clear()
                try:
                    await self.reader.process(self, batch)
                except Exception:
                    # A bug must not silently stop a partition: give the batch back and go on.
                    log.exception("batch failed unexpectedly; it will be tried again", extra={"lane": str(self.pid)})
                    self.requeue(batch)
                    await asyncio.sleep(1.0)
                finally:
                    self.in_flight = 0
                    self.idle.set()
                self._after_batch(batch)

    def _after_batch(self, batch: Sequence[Entry]) -> None:
        # Retried entries go back to the front of ``pending``, so its head is the first unanswered record.
        self.taken_high = max(self.taken_high, batch[-1].record.offset + 1)
        self.commit_point = self.pending[0].record.offset if self.pending else self.taken_high
        if self.paused and self.buffered <= self.reader.policy.max_buffered_per_partition // 2:
            self.paused = False
            self.reader.source.resume([self.pid])
            self.reader.metrics.paused.dec()

    def requeue(self, entries: Sequence[Entry]) -> None:
        self.pending.extendleft(reversed(entries))

    async def settle(self, timeout_s: float) -> None:
        """Stop taking batches and wait (bounded) for the one in flight."""
        self.closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout_s)

    def cancel(self) -> None:
        self.task.cancel()
        self.reader.release(self.buffered)
        if self.paused:
            self.reader.metrics.paused.dec()


class Reader:
    def __init__(
        self,
        source: Source,
        delivery: Delivery,
        dead_letters: DeadLetters,
        policy: ReaderPolicy,
        metrics: ReaderMetrics,
        backoff: Backoff,
    ) -> None:
        self.source = source
        self.delivery = delivery
        self.dead_letters = dead_letters
        self.policy = policy
        self.metrics = metrics
        self.backoff = backoff
        self.lanes: dict[PartitionId, Lane] = {}
        self._in_flight = asyncio.Semaphore(policy.max_in_flight_batches)
        #: Records read and not yet answered, over all lanes; ``_room`` is set while below the mark.
        self._buffered = 0
        self._room = asyncio.Event()
        self._room.set()

    # -- the partition listener (called by the source on rebalance) --------------------------------

    def on_assigned(self, partitions: Sequence[PartitionId]) -> None:
        for pid in partitions:
            if pid not in self.lanes:
                self.lanes[pid] = Lane(pid, self)
        log.info("partitions assigned", extra={"partitions": [f"{p.topic}-{p.partition}" for p in partitions]})

    async def on_revoked(self, partitions: Sequence[PartitionId]) -> Mapping[PartitionId, int]:
        lanes = [self.lanes.pop(p) for p in partitions if p in self.lanes]
        await asyncio.gather(*(lane.settle(self.policy.drain_timeout_s) for lane in lanes))
        final = {}
        for lane in lanes:
            lane.cancel()
            if lane.commit_point is not None:
                final[lane.pid] = lane.commit_point
        log.info("partitions revoked", extra={"partitions": [f"{p.topic}-{p.partition}" for p in partitions]})
        return final

    def on_lost(self, partitions: Sequence[PartitionId]) -> None:
        for pid in partitions:
            lane = self.lanes.pop(pid, None)
            if lane is not None:
                lane.cancel()
        log.warning("partitions lost", extra={"partitions": [f"{p.topic}-{p.partition}" for p in partitions]})

    # -- the main loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.source.start(self)
        committer = asyncio.create_task(self._commit_loop())
        try:
            while not stop.is_set():
                if self.source.at_end() and self._all_answered():
                    log.info("input exhausted and answered for")
                    break
                await self._room_to_poll(stop)
                records = await self.source.poll(self.policy.poll_max_records, self.policy.poll_timeout_s)
                self._accept(records)
        finally:
            committer.cancel()
            await self._drain()

    async def _room_to_poll(self, stop: asyncio.Event) -> None:
        """Wait while the reader holds its maximum; after ``stall_pause_s`` pause the lanes that hold records."""
        policy = self.policy
        if self._buffered < policy.max_buffered_messages:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + policy.stall_pause_s
        while self._buffered >= policy.max_buffered_messages and not stop.is_set():
            left = deadline - loop.time()
            if left <= 0:
                for lane in self.lanes.values():
                    if lane.buffered:
                        lane.pause()
                return
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), min(left, _ROOM_CHECK_S))

    def release(self, n: int) -> None:
        """``n`` records left the reader: answered, dead-lettered or given back with their partition."""
        self._buffered -= n
        self.metrics.in_flight.dec(n)
        if self._buffered < self.policy.max_buffered_messages:
            self._room.set()

    def _accept(self, records: Sequence[InRecord]) -> None:
        if not records:
            return
        self.metrics.messages_in.inc(len(records))
        self.metrics.in_flight.inc(len(records))
        self._buffered += len(records)
        system = self.source.system
        policy = self.policy
        # A poll returns runs of records of one partition: each run goes to its lane at once.
        pid = records[0].partition
        run: list[Entry] = []
        for r in records:
            if r.partition is not pid and r.partition != pid:
                self._lane(pid).add(run)
                pid, run = r.partition, []
            run.append(make_entry(r, system=system, encoding=policy.encoding, max_bytes=policy.max_message_bytes))
        self._lane(pid).add(run)

    def _lane(self, pid: PartitionId) -> Lane:
        lane = self.lanes.get(pid)
        if lane is None:  # a source that does not announce partitions (files)
            lane = self.lanes[pid] = Lane(pid, self)
        return lane

    def _all_answered(self) -> bool:
        return all(not lane.pending and lane.in_flight == 0 for lane in self.lanes.values())

    async def process(self, lane: Lane, batch: list[Entry]) -> None:
        """Deliver one batch of one partition and settle every entry: answered, dead-lettered or requeued."""
        sendable = [e for e in batch if e.error is None]
        async with self._in_flight:
            answered = await self.delivery.deliver(sendable) if sendable else []
        if len(answered) == len(batch) and all(out is OK for out in answered):  # the common case, in one pass
            self.metrics.messages_ok.inc(len(batch))
            self.release(len(batch))
            return
        outcomes = iter(answered)
        dead: list[tuple[Entry, str, str]] = []
        again: list[Entry] = []
        retry_delay = 0
        ok = 0
        for e in batch:
            out = Outcome("reject", e.error, "reader") if e.error is not None else next(outcomes)
            if out.status == "ok":
                ok += 1
            elif out.status == "reject":
                if out.stage == "app":
                    self.metrics.messages_rejected.inc()
                dead.append((e, out.error or "rejected", out.stage))
            elif out.status == "retry":
                e.attempts += 1
                if e.attempts > self.policy.message_max_retries:
                    dead.append((e, f"gave up after {e.attempts} tries: {out.error}", "reader"))
                else:
                    self.metrics.messages_retried.labels(reason="app").inc()
                    retry_delay = max(retry_delay, e.attempts)
                    again.append(e)
            else:
                again.append(e)
        if dead:
            await self.dead_letters.send(dead)
        self.metrics.messages_ok.inc(ok)
        self.release(len(batch) - len(again))
        if again:
            lane.requeue(again)
            if retry_delay:
                await asyncio.sleep(self.backoff.delay(retry_delay))

    # -- commits and shutdown --------------------------------------------------------------------

    def _commit_offsets(self) -> dict[PartitionId, int]:
        out = {}
        for pid, lane in self.lanes.items():
            point = lane.commit_point
            if point is not None and point != self.source.committed(pid):
                out[pid] = point
        return out

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.policy.commit_interval_s)
            offsets = self._commit_offsets()
            if offsets:
                self.source.request_commit(offsets)
            if isinstance(self.source, HasLag):
                for pid, lag in self.source.lag().items():
                    self.metrics.lag.labels(topic=pid.topic, partition=str(pid.partition)).set(lag)

    async def _drain(self) -> None:
        """Stop: finish the batches in flight (bounded), give back the rest, commit, leave."""
        lanes = list(self.lanes.values())
        await asyncio.gather(*(lane.settle(self.policy.drain_timeout_s) for lane in lanes))
        final = {lane.pid: lane.commit_point for lane in lanes if lane.commit_point is not None}
        for lane in lanes:
            lane.cancel()
        self.lanes.clear()
        await self.source.close(final)
        log.info(
            "input reader stopped",
            extra={"committed": {f"{p.topic}-{p.partition}": o for p, o in final.items()}},
        )
