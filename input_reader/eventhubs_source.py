"""Event Hubs input: the async ``EventHubConsumerClient`` with the Blob checkpoint store.

The SDK's event processor owns the consumer group side: it balances partitions across every reader
of the group through ownership records in the checkpoint store (claimed and renewed every
load-balancing interval, taken over when they expire or are released), opens one exclusive (epoch)
receiver per owned partition, and starts a partition at its checkpoint or, without one, at the
configured starting position. This module maps that onto ``Source``:

- a partition is ``PartitionId(hub, int(partition_id))``; an offset is the event's sequence number
  (contiguous within a partition), so the reader's commit point is the next sequence number to read;
- a checkpoint is written for the event just before the commit point, with both its sequence number
  and its offset (the SDK resumes after that offset), from a map of sequence number to offset kept for
  events handed out and not yet checkpointed;
- ``on_partition_initialize`` is the listener's ``on_assigned``; ``on_partition_close`` awaits its
  ``on_revoked`` (the batch in flight settles) and writes the final checkpoint only if the
  checkpoint store still names this reader the owner;
- the SDK pushes events to a callback: each partition has a bounded queue, and the callback waits
  while it is full, which stops the SDK's receive loop for that partition (its own buffer is bounded by
  ``max_batch_size`` plus the prefetch), so memory stays bounded; a paused partition is simply not
  handed out until it is resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from azure.eventhub import CloseReason, EventData
from azure.eventhub.aio import CheckpointStore, EventHubConsumerClient, PartitionContext
from azure.eventhub.amqp import AmqpMessageBodyType

from streampod.eventhubs.clients import Credentials, EventHubAuth, checkpoint_store
from streampod.metrics import ReaderMetrics
from streampod.settings import InputReaderSettings
from streampod.source import InRecord, PartitionId, PartitionListener, Source

log = logging.getLogger(__name__)


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else str(value)).encode()


def _body(event: EventData) -> bytes:
    if event.body_type == AmqpMessageBodyType.DATA:
        body = event.body
        return body if isinstance(body, bytes) else b"".join(body)  # type: ignore[arg-type]
    return event.body_as_str().encode()


def to_record(pid: PartitionId, event: EventData) -> InRecord:
    key = event.partition_key
    enqueued = event.enqueued_time
    return InRecord(
        partition=pid,
        offset=int(event.sequence_number or 0),
        key=None if key is None else _bytes(key),
        value=_body(event),
        headers=[(_text(k), _bytes(v)) for k, v in (event.properties or {}).items()],
        timestamp=None if enqueued is None else int(enqueued.timestamp() * 1000),
    )


class OwnershipTracker(CheckpointStore):
    """The checkpoint store the SDK uses, watched: which reader this is, and which partitions it holds.

    The SDK keeps its owner id and ownership records to itself; every claim it makes passes through
    here, so this is where a reader learns them without reaching into the SDK's internals.
    """

    def __init__(self, inner: CheckpointStore, expiration_s: float) -> None:
        self.inner = inner
        self.expiration_s = expiration_s
        self.owner_id: str | None = None
        #: partition id -> when the last successful claim of it was made.
        self.claimed: dict[str, float] = {}
        self.last_claim_ok: float | None = None

    async def list_ownership(
        self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str, **kwargs: Any
    ) -> Iterable[dict[str, Any]]:
        return await self.inner.list_ownership(fully_qualified_namespace, eventhub_name, consumer_group, **kwargs)

    async def claim_ownership(
        self, ownership_list: Iterable[dict[str, Any]], **kwargs: Any
    ) -> Iterable[dict[str, Any]]:
        wanted = list(ownership_list)
        ours = {o["owner_id"] for o in wanted if o.get("owner_id")}
        if len(ours) == 1:
            self.owner_id = ours.pop()
        claimed = list(await self.inner.claim_ownership(wanted, **kwargs))
        now = time.monotonic()
        releasing = all(not o.get("owner_id") for o in wanted)
        if releasing:
            for o in wanted:
                self.claimed.pop(o["partition_id"], None)
        else:
            # What the SDK asked for and did not get is another reader's now.
            self.claimed = {o["partition_id"]: now for o in claimed if o.get("owner_id") == self.owner_id}
            self.last_claim_ok = now
        return claimed

    async def update_checkpoint(self, checkpoint: dict[str, Any], **kwargs: Any) -> None:
        await self.inner.update_checkpoint(checkpoint, **kwargs)

    async def list_checkpoints(
        self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str, **kwargs: Any
    ) -> Iterable[dict[str, Any]]:
        return await self.inner.list_checkpoints(fully_qualified_namespace, eventhub_name, consumer_group, **kwargs)

    def holds(self, partition_id: str) -> bool:
        """From the last claim: cheap, and at most one load-balancing interval old."""
        at = self.claimed.get(partition_id)
        return at is not None and time.monotonic() - at < self.expiration_s

    async def still_owner(self, ctx: PartitionContext) -> bool:
        """Asks the store itself: does the ownership record of this partition still name this reader?"""
        records = await self.inner.list_ownership(ctx.fully_qualified_namespace, ctx.eventhub_name, ctx.consumer_group)
        for o in records:
            if o["partition_id"] == ctx.partition_id:
                fresh = o.get("last_modified_time") is None or o["last_modified_time"] + self.expiration_s > time.time()
                return bool(self.owner_id) and o.get("owner_id") == self.owner_id and fresh
        return False

    async def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            await close()


class _Partition:
    """One owned partition: its queue of received events and what the checkpoint needs."""

    def __init__(self, pid: PartitionId, ctx: PartitionContext) -> None:
        self.pid = pid
        self.ctx = ctx
        self.queue: deque[InRecord] = deque()
        #: sequence number -> event offset, for events handed out and not yet checkpointed.
        self.offsets: OrderedDict[int, str] = OrderedDict()
        self.room = asyncio.Event()
        self.room.set()
        self.paused = False
        self.closing = False
        self.last_enqueued: int | None = None


ClientFactory = Callable[[CheckpointStore], EventHubConsumerClient]


class EventHubSource(Source):
    system = "eventhubs"

    def __init__(
        self,
        client_factory: ClientFactory,
        store: CheckpointStore,
        hub: str,
        metrics: ReaderMetrics,
        *,
        starting_position: str | datetime = "-1",
        ownership_expiration_s: float = 180.0,
        max_batch_size: int = 300,
        queue_capacity: int = 1000,
        prefetch: int = 300,
        on_closed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._tracker = OwnershipTracker(store, ownership_expiration_s)
        self._hub = hub
        self._metrics = metrics
        self._starting_position = starting_position
        self._max_batch_size = max_batch_size
        self._capacity = max(queue_capacity, 1)
        self._prefetch = prefetch
        self._on_closed = on_closed
        self._parts: dict[str, _Partition] = {}
        self._committed: dict[PartitionId, int] = {}
        self._to_commit: dict[PartitionId, int] = {}
        self._data = asyncio.Event()
        self._commit_wakeup = asyncio.Event()
        self._error: str | None = None
        self._error_at = 0.0
        self._listener: PartitionListener | None = None
        self._client: EventHubConsumerClient | None = None
        self._receiving: asyncio.Task[None] | None = None
        self._committer: asyncio.Task[None] | None = None
        self._rotation = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, listener: PartitionListener) -> None:
        self._listener = listener
        self._client = self._client_factory(self._tracker)
        self._receiving = asyncio.create_task(
            self._client.receive_batch(
                self._on_batch,
                max_batch_size=self._max_batch_size,
                prefetch=self._prefetch,
                starting_position=self._starting_position,
                # Also applies to checkpoints: the checkpointed event was answered for, skip it.
                starting_position_inclusive=False,
                track_last_enqueued_event_properties=True,
                on_error=self._on_error,
                on_partition_initialize=self._on_initialize,
                on_partition_close=self._on_close,
            ),
            name="eventhubs-receive",
        )
        self._committer = asyncio.create_task(self._commit_loop(), name="eventhubs-checkpoints")

    async def close(self, final_offsets: Mapping[PartitionId, int]) -> None:
        for part in list(self._parts.values()):
            point = final_offsets.get(part.pid)
            if point is not None and self._tracker.holds(part.ctx.partition_id):
                await self._checkpoint(part, point)
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        for part in self._parts.values():
            part.closing = True
            part.room.set()
        if self._client is not None:
            # Stops the processor: each partition closes (SHUTDOWN) and its ownership is released,
            # so another reader takes it over at its next balancing instead of after expiry.
            await self._client.close()
        if self._receiving is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._receiving
        await self._tracker.close()
        if self._on_closed is not None:
            await self._on_closed()

    # -- the SDK's callbacks ---------------------------------------------------------------------

    async def _on_initialize(self, ctx: PartitionContext) -> None:
        pid = PartitionId(self._hub, int(ctx.partition_id))
        self._parts[ctx.partition_id] = _Partition(pid, ctx)
        assert self._listener is not None
        self._listener.on_assigned([pid])

    async def _on_batch(self, ctx: PartitionContext, events: list[EventData]) -> None:
        part = self._parts.get(ctx.partition_id)
        if part is None or part.closing:
            return
        self._error = None
        for event in events:
            while len(part.queue) >= self._capacity:
                # Waiting here stops the SDK's receive loop for this partition: bounded memory.
                part.room.clear()
                await part.room.wait()
                if part.closing:
                    return
            record = to_record(part.pid, event)
            part.offsets[record.offset] = str(event.offset)
            part.queue.append(record)
        props = ctx.last_enqueued_event_properties
        if props and props.get("sequence_number") is not None:
            part.last_enqueued = int(props["sequence_number"])
        self._data.set()

    async def _on_close(self, ctx: PartitionContext, reason: CloseReason) -> None:
        part = self._parts.get(ctx.partition_id)
        if part is None:
            return
        part.closing = True
        part.room.set()
        part.queue.clear()  # not handed out: the next owner reads them again
        assert self._listener is not None
        final = await self._listener.on_revoked([part.pid])
        point = final.get(part.pid)
        if point is not None and reason == CloseReason.OWNERSHIP_LOST:
            try:
                owner = await self._tracker.still_owner(ctx)
            except Exception as exc:
                owner = False
                log.warning("cannot read partition ownership", extra={"partition": str(part.pid), "error": repr(exc)})
            if owner:
                await self._checkpoint(part, point)
            else:
                log.info(
                    "partition taken over; its new owner resumes from the last checkpoint",
                    extra={"partition": str(part.pid)},
                )
        elif point is not None:
            await self._checkpoint(part, point)
        self._parts.pop(ctx.partition_id, None)
        self._committed.pop(part.pid, None)
        self._to_commit.pop(part.pid, None)
        log.info("partition closed", extra={"partition": str(part.pid), "reason": reason.value})

    async def _on_error(self, ctx: PartitionContext | None, error: Exception) -> None:
        where = "load balancing" if ctx is None else f"partition {ctx.partition_id}"
        self._error = f"{where}: {type(error).__name__}: {error}"
        self._error_at = time.monotonic()
        log.warning("event hubs error", extra={"where": where, "error": f"{type(error).__name__}: {error}"})

    # -- the reader's side -----------------------------------------------------------------------

    async def poll(self, max_records: int, timeout_s: float) -> list[InRecord]:
        records = self._take(max_records)
        if not records:
            self._raise_if_stopped()
            self._data.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._data.wait()
            records = self._take(max_records)
        return records

    def _take(self, max_records: int) -> list[InRecord]:
        ready = [p for p in self._parts.values() if p.queue and not p.paused and not p.closing]
        if not ready:
            return []
        # Start with a different partition each time, so one busy partition cannot starve the others.
        self._rotation = (self._rotation + 1) % len(ready)
        ready = ready[self._rotation :] + ready[: self._rotation]
        out: list[InRecord] = []
        share = max(max_records // len(ready), 1)
        for part in ready:
            n = min(share, max_records - len(out), len(part.queue))
            out.extend(part.queue.popleft() for _ in range(n))
            if len(part.queue) < self._capacity:
                part.room.set()
            if len(out) >= max_records:
                break
        return out

    def _raise_if_stopped(self) -> None:
        task = self._receiving
        if task is not None and task.done() and not task.cancelled():
            exc = task.exception()
            raise RuntimeError(f"receiving from Event Hubs stopped: {exc!r}") from exc

    def pause(self, partitions: Sequence[PartitionId]) -> None:
        for part in self._parts.values():
            if part.pid in partitions:
                part.paused = True
        log.info("partitions paused: the app is slower than the input", extra={"partitions": len(partitions)})

    def resume(self, partitions: Sequence[PartitionId]) -> None:
        for part in self._parts.values():
            if part.pid in partitions:
                part.paused = False
        self._data.set()

    def request_commit(self, offsets: Mapping[PartitionId, int]) -> None:
        self._to_commit.update(offsets)
        self._commit_wakeup.set()

    def committed(self, partition: PartitionId) -> int | None:
        return self._committed.get(partition)

    def lag(self) -> Mapping[PartitionId, int]:
        out = {}
        for part in self._parts.values():
            done = self._committed.get(part.pid)
            if part.last_enqueued is not None and done is not None:
                out[part.pid] = max(part.last_enqueued + 1 - done, 0)
        return out

    def ready(self) -> tuple[bool, str]:
        if self._receiving is None:
            return False, "consumer not started"
        if self._receiving.done():
            return False, "receiving from Event Hubs stopped"
        claimed = self._tracker.last_claim_ok
        if self._error is not None and (claimed is None or claimed < self._error_at):
            return False, self._error
        return True, f"{len(self._parts)} partition(s) owned"

    # -- checkpoints -----------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await self._commit_wakeup.wait()
            self._commit_wakeup.clear()
            wanted, self._to_commit = self._to_commit, {}
            for part in list(self._parts.values()):
                point = wanted.get(part.pid)
                # Never for a partition this reader no longer holds (closing ones write their own).
                if point is not None and not part.closing and self._tracker.holds(part.ctx.partition_id):
                    await self._checkpoint(part, point)

    async def _checkpoint(self, part: _Partition, point: int) -> None:
        """Checkpoint the event before ``point`` (the reader's next sequence number to read)."""
        if self._committed.get(part.pid) == point:
            return
        seq = point - 1
        offset = part.offsets.get(seq)
        if offset is None:
            # Nothing answered for beyond where this owner started: that start is already the
            # previous checkpoint (or the starting position), so there is nothing to write.
            return
        ctx = part.ctx
        checkpoint = {
            "fully_qualified_namespace": ctx.fully_qualified_namespace,
            "eventhub_name": ctx.eventhub_name,
            "consumer_group": ctx.consumer_group,
            "partition_id": ctx.partition_id,
            "offset": offset,
            "sequence_number": seq,
        }
        start = time.perf_counter()
        try:
            await self._tracker.update_checkpoint(checkpoint)
        except Exception as exc:
            self._metrics.commits.labels(result="failed").inc()
            log.warning(
                "checkpoint failed; will retry with the next commit",
                extra={"partition": str(part.pid), "error": f"{type(exc).__name__}: {exc}"},
            )
            return
        self._metrics.commit_seconds.observe(time.perf_counter() - start)
        self._metrics.commits.labels(result="ok").inc()
        self._committed[part.pid] = point
        while part.offsets and next(iter(part.offsets)) < seq:
            part.offsets.popitem(last=False)


def eventhub_source(s: InputReaderSettings, metrics: ReaderMetrics) -> EventHubSource:
    """The source the settings describe; it closes the credential it made when it closes."""
    credentials = Credentials()
    auth = EventHubAuth(s.eventhub_connection(), s.eventhub_namespace, credentials)
    assert s.consumer_group is not None and s.checkpoint_store_container is not None
    hub, group = s.input_topics[0], s.consumer_group
    expiration = s.eventhub_ownership_expiration_s or 6 * s.eventhub_load_balancing_interval_s
    store = checkpoint_store(
        s.checkpoint_store_secret(), s.checkpoint_store_account_url, s.checkpoint_store_container, credentials
    )

    def client(checkpoints: CheckpointStore) -> EventHubConsumerClient:
        return auth.consumer(
            hub,
            group,
            checkpoint_store=checkpoints,
            load_balancing_interval=s.eventhub_load_balancing_interval_s,
            partition_ownership_expiration_interval=expiration,
        )

    batch = min(s.batch_max_messages, 1000)
    return EventHubSource(
        client,
        store,
        hub,
        metrics,
        starting_position=s.starting_position(),
        ownership_expiration_s=expiration,
        max_batch_size=batch,
        queue_capacity=max(batch, s.max_buffered_per_partition // 2),
        prefetch=s.eventhub_prefetch,
        on_closed=credentials.close,
    )
