"""The async Kafka producer streampod writes with: the output writer's records and the reader's dead letters.

One ``confluent_kafka.Producer`` (idempotent, ``acks=all``) and one background thread that calls
``poll()``. ``send`` produces a whole batch and awaits a single future that the delivery callbacks
count down from the poll thread, so a batch costs one cross-thread wake-up, not one per message.
A record is answered ok only from its delivery report, that is after the broker acknowledged it.

How a failed delivery is classified (``Delivery.retriable``). librdkafka has already retried
everything it could within ``message.timeout.ms`` before it reports a failure (see
``rd_kafka_handle_Produce_error`` in librdkafka's rdkafka_request.c), so the question here is only
whether a later attempt could succeed:

- not retriable: the record itself can never be written, whatever the cluster does:
  MSG_SIZE_TOO_LARGE (broker or local ``message.max.bytes``), INVALID_MSG, INVALID_MSG_SIZE,
  RECORD_LIST_TOO_LARGE, INVALID_RECORD, INVALID_TIMESTAMP, UNSUPPORTED_FOR_MESSAGE_FORMAT,
  TOPIC_EXCEPTION (illegal topic name) and _INVALID_ARG. These are dead-lettered by the caller.
- retriable: everything else. That covers the outage family (_MSG_TIMED_OUT, _TIMED_OUT,
  _TRANSPORT, NOT_ENOUGH_REPLICAS…), our own purges (_PURGE_QUEUE, _PURGE_INFLIGHT) and the
  idempotence errors after which the producer is recreated (_FATAL, OUT_OF_ORDER_SEQUENCE_NUMBER,
  UNKNOWN_PRODUCER_ID…). Unknown topics (UNKNOWN_TOPIC_OR_PART, _UNKNOWN_TOPIC) and missing ACLs
  (TOPIC_AUTHORIZATION_FAILED) are retriable on purpose: the record is fine, the destination is not
  there yet (a topic being created, an ACL being granted). Retrying keeps the records, and a
  caller's attempt budget still dead-letters them if nobody fixes the destination.

Whether the broker is reachable (``ready``, ``broker_up``): down on ``_ALL_BROKERS_DOWN``,
``_TRANSPORT``, ``_RESOLVE``, ``_AUTHENTICATION`` or ``_SSL`` from the error callback; up after a
successful delivery or a successful metadata probe. Up is not read from ``stats_cb``: a
sparse-connection producer with nothing to send has no broker connection, so statistics would call
an idle but healthy cluster unreachable and a writer that refuses work while "down" would never
get the traffic that brings it back. Instead, while down, the poll thread probes with a metadata
request about once a second, so readiness comes back without waiting for traffic.

A fatal error (the idempotent producer can no longer keep its guarantees) arrives either through
the error callback or, with confluent-kafka, as a fatal ``KafkaException`` raised from ``poll()``.
The producer is then marked down, replaced by a new instance, and every send still waiting on the
old one is answered retriable: the caller sends those records again, which at worst duplicates a
record the old producer had written (at-least-once, never a loss).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException

from streampod.sink import Delivery, OutRecord

__all__ = ["AsyncProducer", "Delivery", "OutRecord", "classify"]

log = logging.getLogger(__name__)

_NEVER_WRITABLE = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError._INVALID_ARG,
    }
)
_UNREACHABLE = frozenset(
    {
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TRANSPORT,
        KafkaError._RESOLVE,
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
    }
)
_OK = Delivery(True)
_UNSET = Delivery(False, "no outcome yet")
_POLL_S = 0.1
_PROBE_EVERY_S = 1.0
_PROBE_TIMEOUT_S = 1.0
_ROOM_WAIT_S = 0.1
# librdkafka answers every record within message.timeout.ms; this only guards against a report
# that never comes (a bug), so that a request cannot hang forever.
_REPORT_GRACE_S = 30.0


def classify(err: KafkaError) -> Delivery:
    """The Delivery for a failed record (see the module docstring for the classification)."""
    return Delivery(False, f"{err.name()}: {err.str()}", err.code() not in _NEVER_WRITABLE)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Batch:
    """The results of one ``send`` call, filled from whichever thread learns each outcome."""

    __slots__ = ("_left", "_lock", "_loop", "future", "results")

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._left = size
        self.results: list[Delivery] = [_UNSET] * size
        self.future: asyncio.Future[None] = loop.create_future()

    def settle(self, index: int, delivery: Delivery) -> None:
        """Record the outcome of record ``index``; the first outcome wins, later ones are ignored."""
        with self._lock:
            if self.results[index] is not _UNSET:
                return
            self.results[index] = delivery
            self._left -= 1
            finished = self._left == 0
        if finished:
            # RuntimeError: the loop is closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_resolve, self.future)

    def report(self, index: int, err: KafkaError | None, _msg: Any) -> None:
        """The delivery callback of record ``index``, on the poll thread (one call per record written)."""
        self.settle(index, _OK if err is None else classify(err))

    def settle_rest(self, delivery: Delivery) -> None:
        for i in range(len(self.results)):
            self.settle(i, delivery)


class AsyncProducer:
    def __init__(
        self,
        config: dict[str, str],
        *,
        delivery_timeout_ms: int = 30000,
        linger_ms: int = 5,
        name: str = "producer",
    ) -> None:
        self._name = name
        self._delivery_timeout_s = delivery_timeout_ms / 1000
        self._config: dict[str, Any] = {
            "compression.type": "lz4",
            "client.id": f"streampod-{name}",
            **config,
            # The delivery guarantees are not negotiable by extra config.
            "enable.idempotence": "true",
            "acks": "all",
            "linger.ms": str(linger_ms),
            "message.timeout.ms": str(delivery_timeout_ms),
            "error_cb": self._on_error,
            "logger": logging.getLogger(f"{__name__}.librdkafka"),
        }
        self._producer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._close_timeout_s = 10.0
        self._closing = False
        self._pending: set[_Batch] = set()
        self._pending_lock = threading.Lock()
        self._fatal: KafkaError | None = None
        self._up = False
        self._reason = "connecting to Kafka"
        self._room = asyncio.Event()
        self._room_waiters = 0

    async def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"producer {self._name} already started")
        self._loop = asyncio.get_running_loop()
        self._producer = confluent_kafka.Producer(self._config)
        self._thread = threading.Thread(target=self._run, name=f"{self._name}-poll", daemon=True)
        self._thread.start()

    async def send(self, records: Sequence[OutRecord]) -> list[Delivery]:
        """Produce every record and wait for all delivery reports; one Delivery per record, in order."""
        if self._loop is None:
            raise RuntimeError(f"producer {self._name} used before start()")
        if not records:
            return []
        batch = _Batch(self._loop, len(records))
        with self._pending_lock:
            self._pending.add(batch)
        try:
            if self._closing:
                batch.settle_rest(Delivery(False, f"producer {self._name} is closing"))
            else:
                await self._produce(batch, records)
            try:
                async with asyncio.timeout(self._delivery_timeout_s + _REPORT_GRACE_S):
                    await batch.future
            except TimeoutError:
                log.error("delivery reports overdue", extra={"producer": self._name})
                batch.settle_rest(Delivery(False, "no delivery report in time"))
            # Marked here rather than in the callback, which runs once per record.
            if not self._up and _OK in batch.results:
                self._set_up("a delivery was acknowledged")
        finally:
            with self._pending_lock:
                self._pending.discard(batch)
        return batch.results

    async def _produce(self, batch: _Batch, records: Sequence[OutRecord]) -> None:
        for i, rec in enumerate(records):
            report = functools.partial(batch.report, i)
            while True:
                try:
                    # Read the producer each time: a fatal error may have replaced it.
                    self._producer.produce(rec.topic, rec.value, rec.key, on_delivery=report, headers=rec.headers)
                except BufferError:
                    # The local queue is full: wait for delivery reports to make room, never drop.
                    await self._wait_for_room()
                    continue
                except KafkaException as exc:
                    err = exc.args[0]
                    if err.fatal():
                        self._fatal = err
                    batch.settle(i, classify(err))
                break

    async def _wait_for_room(self) -> None:
        self._room_waiters += 1
        self._room.clear()
        try:
            async with asyncio.timeout(_ROOM_WAIT_S):
                await self._room.wait()
        except TimeoutError:
            pass
        finally:
            self._room_waiters -= 1

    def ready(self) -> tuple[bool, str]:
        if self._up:
            return True, "connected to Kafka"
        return False, self._reason

    @property
    def broker_up(self) -> bool:
        return self._up

    async def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is queued (up to ``timeout_s``), stop the poll thread, answer what is left."""
        self._closing = True
        if self._thread is None:
            return
        self._close_timeout_s = timeout_s
        self._stop.set()
        await asyncio.to_thread(self._thread.join)
        self._fail_pending(Delivery(False, f"producer {self._name} closed before delivery"))

    # ---- the poll thread -------------------------------------------------------------------

    def _run(self) -> None:
        next_probe = 0.0
        while not self._stop.is_set():
            try:
                if self._fatal is not None:
                    self._recreate()
                if not self._up and time.monotonic() >= next_probe:
                    self._probe()
                    next_probe = time.monotonic() + _PROBE_EVERY_S
                self._poll()
            except Exception:
                # This thread is what answers every send: it must outlive any surprise.
                log.exception("producer poll thread error", extra={"producer": self._name})
                time.sleep(_POLL_S)
        self._drain()

    def _poll(self) -> None:
        try:
            served = self._producer.poll(_POLL_S)
        except KafkaException as exc:
            self._on_error(exc.args[0])
            return
        if served and self._room_waiters:
            self._wake_room_waiters()

    def _on_error(self, err: KafkaError) -> None:
        # Called from poll() on the poll thread: only record state here, act after poll returns.
        if err.fatal() or err.code() == KafkaError._FATAL:
            self._fatal = err
            self._set_down(f"fatal producer error {err.name()}: {err.str()}")
        elif err.code() in _UNREACHABLE:
            self._set_down(f"{err.name()}: {err.str()}")

    def _probe(self) -> None:
        try:
            self._producer.list_topics(timeout=_PROBE_TIMEOUT_S)
        except KafkaException as exc:
            err = exc.args[0]
            self._reason = f"cannot reach Kafka: {err.name()}: {err.str()}"
        else:
            self._set_up("metadata request answered")

    def _set_up(self, why: str) -> None:
        if not self._up:
            self._up = True
            log.info("kafka reachable", extra={"producer": self._name, "why": why})

    def _set_down(self, reason: str) -> None:
        self._reason = reason
        if self._up:
            self._up = False
            log.warning("kafka unreachable", extra={"producer": self._name, "reason": reason})

    def _wake_room_waiters(self) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._room.set)

    def _recreate(self) -> None:
        err = self._fatal
        assert err is not None
        self._fatal = None
        self._set_down(f"fatal producer error {err.name()}: {err.str()}; recreating the producer")
        log.error(
            "fatal producer error, recreating the producer",
            extra={"producer": self._name, "code": err.name(), "reason": err.str()},
        )
        with self._pending_lock:
            waiting = list(self._pending)
        old = self._producer
        try:
            self._producer = confluent_kafka.Producer(self._config)
        except KafkaException:
            log.exception("cannot recreate the producer, will try again", extra={"producer": self._name})
            self._fatal = err
            time.sleep(_PROBE_EVERY_S)
            return
        # Purged records get their delivery reports (retriable) from this flush; anything the old
        # instance never reports is answered below, so no send waits on a dead producer.
        retry = Delivery(False, f"producer recreated after fatal error {err.name()}")
        try:
            old.purge()
            old.flush(1.0)
        finally:
            for batch in waiting:
                batch.settle_rest(retry)

    def _drain(self) -> None:
        producer = self._producer
        left = producer.flush(self._close_timeout_s)
        if left:
            log.warning(
                "records still undelivered at close, answering them retriable",
                extra={"producer": self._name, "records": left},
            )
            producer.purge()
            producer.flush(1.0)
        log.info("producer closed", extra={"producer": self._name})

    def _fail_pending(self, delivery: Delivery) -> None:
        with self._pending_lock:
            waiting = list(self._pending)
        for batch in waiting:
            batch.settle_rest(delivery)
