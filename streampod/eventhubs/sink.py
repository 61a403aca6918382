"""Records to Event Hubs with ``EventHubProducerClient``: the output writer's records and the reader's dead letters.

A record's key is its partition key, so one key's events land in one partition in order. The SDK's
``EventDataBatch`` carries one partition key, so records are grouped by (hub, key); each group is
sent as batches built with ``create_batch``, which never exceed the hub's size limit (``add`` refuses
what would not fit, and the batch is sent before a new one starts). A record answers ok only after
the send of its batch completed, that is after the service accepted it.

Failures:

- one event larger than the limit on its own can never be written: a non-retriable Delivery,
  dead-lettered by the caller;
- ``EventDataError`` (the SDK found the event itself unsendable): non-retriable;
- everything else (connection, authentication, timeouts, the service refusing a send): retriable.
  Once a batch of a key failed, the rest of that key's records in the call are not sent but answered
  retriable too, so that a retry cannot put them ahead of the failed ones.

Headers travel as application properties: UTF-8 values as strings (what other Event Hubs consumers
expect), anything else as bytes. A null value is sent as an empty body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.exceptions import AuthenticationError, ConnectError, ConnectionLostError, EventDataError

from streampod.eventhubs.clients import Credentials, EventHubAuth
from streampod.settings import EventHubConnection
from streampod.sink import Delivery, OutRecord, Sink

log = logging.getLogger(__name__)

_OK = Delivery(True)
_PROBE_EVERY_S = 1.0
_PROBE_TIMEOUT_S = 10.0
_UNREACHABLE = (AuthenticationError, ConnectError, ConnectionLostError)


def to_event(record: OutRecord) -> EventData:
    event = EventData(record.value or b"")
    if record.headers:
        event.properties = {k: _property(v) for k, v in record.headers}
    return event


def _property(value: str | bytes) -> str | bytes:
    if isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value


def partition_key(key: bytes | None) -> str | None:
    # The service hashes a string; contract keys are UTF-8, and a dead letter's undecodable key still
    # maps to one stable string.
    return None if key is None else key.decode(errors="replace")


def classify(exc: Exception) -> Delivery:
    return Delivery(False, f"{type(exc).__name__}: {exc}", not isinstance(exc, EventDataError))


class EventHubSink(Sink):
    """Writes to any event hub of one namespace; one producer client per hub, made on first use."""

    def __init__(
        self,
        producer_for: Callable[[str], EventHubProducerClient],
        default_hub: str,
        *,
        send_timeout_s: float = 30.0,
        name: str = "output-writer",
        on_closed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._producer_for = producer_for
        self._default_hub = default_hub
        self._send_timeout_s = send_timeout_s
        self._name = name
        self._producers: dict[str, EventHubProducerClient] = {}
        self._up = False
        self._reason = "connecting to Event Hubs"
        self._probe: asyncio.Task[None] | None = None
        self._on_closed = on_closed

    def _producer(self, hub: str) -> EventHubProducerClient:
        producer = self._producers.get(hub)
        if producer is None:
            producer = self._producers[hub] = self._producer_for(hub)
        return producer

    async def start(self) -> None:
        self._producer(self._default_hub)
        self._probe = asyncio.create_task(self._probe_loop(), name=f"{self._name}-probe")

    async def write(self, records: Sequence[OutRecord]) -> list[Delivery]:
        results: list[Delivery | None] = [None] * len(records)
        groups: dict[tuple[str, bytes | None], list[int]] = {}
        for i, r in enumerate(records):
            groups.setdefault((r.topic, r.key), []).append(i)
        await asyncio.gather(*(self._send_group(hub, key, ix, records, results) for (hub, key), ix in groups.items()))
        return [d or Delivery(False, "no outcome") for d in results]

    async def _send_group(
        self,
        hub: str,
        key: bytes | None,
        indexes: list[int],
        records: Sequence[OutRecord],
        results: list[Delivery | None],
    ) -> None:
        producer = self._producer(hub)
        pkey = partition_key(key)
        pending = list(indexes)
        while pending:
            try:
                batch = await producer.create_batch(partition_key=pkey)
            except Exception as exc:
                self._failed(exc)
                outcome = classify(exc)
                for i in pending:
                    results[i] = outcome
                return
            members: list[int] = []
            while pending:
                i = pending[0]
                try:
                    batch.add(to_event(records[i]))
                except ValueError:
                    if members:
                        break  # full: send this one, then start the next
                    size = len(records[i].value or b"")
                    results[i] = Delivery(
                        False,
                        f"event of {size} bytes does not fit the event hub's limit of {batch.max_size_in_bytes} bytes",
                        retriable=False,
                    )
                    pending.pop(0)
                    continue
                members.append(pending.pop(0))
            if not members:
                continue
            try:
                await producer.send_batch(batch, timeout=self._send_timeout_s)
            except Exception as exc:
                self._failed(exc)
                outcome = classify(exc)
                for i in members:
                    results[i] = outcome
                later = Delivery(False, f"not sent: an earlier event with the same key failed ({outcome.error})")
                for i in pending:
                    results[i] = later
                return
            self._set_up()
            for i in members:
                results[i] = _OK

    def _failed(self, exc: Exception) -> None:
        log.warning("event hubs send failed", extra={"producer": self._name, "error": f"{type(exc).__name__}: {exc}"})
        if isinstance(exc, _UNREACHABLE):
            self._reason = f"cannot reach Event Hubs: {type(exc).__name__}: {exc}"
            if self._up:
                self._up = False
                log.warning("event hubs unreachable", extra={"producer": self._name, "reason": self._reason})

    def _set_up(self) -> None:
        if not self._up:
            self._up = True
            log.info("event hubs reachable", extra={"producer": self._name})

    async def _probe_loop(self) -> None:
        # While down, ask for the hub's properties about once a second, so readiness comes back
        # without waiting for traffic (and a writer that refuses work while down is not stuck).
        while True:
            if not self._up:
                try:
                    async with asyncio.timeout(_PROBE_TIMEOUT_S):
                        await self._producer(self._default_hub).get_eventhub_properties()
                except Exception as exc:
                    self._reason = f"cannot reach Event Hubs: {type(exc).__name__}: {exc}"
                else:
                    self._set_up()
            await asyncio.sleep(_PROBE_EVERY_S)

    def ready(self) -> tuple[bool, str]:
        return (True, "connected to Event Hubs") if self._up else (False, self._reason)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        # Sends in flight were awaited by their callers (the writer drains requests before this).
        await asyncio.gather(*(p.close() for p in self._producers.values()), return_exceptions=True)
        self._producers.clear()
        if self._on_closed is not None:
            await self._on_closed()


def eventhub_sink(s: EventHubConnection, default_hub: str, *, send_timeout_s: float, name: str) -> EventHubSink:
    """A sink to the namespace the settings name; it closes the credential it made when it closes."""
    credentials = Credentials()
    auth = EventHubAuth(s.eventhub_connection(), s.eventhub_namespace, credentials)
    return EventHubSink(
        auth.producer, default_hub, send_timeout_s=send_timeout_s, name=name, on_closed=credentials.close
    )
