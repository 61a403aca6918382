"""An in-memory Event Hubs namespace behind the Azure SDK's own clients, for tests without the service.

There is no Event Hubs emulator without Docker, so tests replace only the SDK's AMQP links (the
narrowest seam the SDK has) and keep everything above them real: ``EventHubProducerClient``,
``EventDataBatch`` size accounting, the producer's retries and error mapping, and on the consumer
side ``EventHubConsumerClient``'s event processor (load balancing and ownership through the real
checkpoint store), its per-partition receive loop and message buffer, ``EventData`` built from
received AMQP messages, ``PartitionContext``. What this replaces:

- ``EventHubProducer._open``: the send link; a send stores the encoded batch's messages in a partition
  (chosen from the partition key, like the service does) and stamps them with sequence number,
  offset and enqueued time;
- ``EventHubConsumer._open``: the receive link; it delivers stored AMQP messages from the event
  position the SDK asked for, honours exclusive (epoch) receivers by stealing the older link, and
  adds the last-enqueued delivery annotations;
- ``ClientBaseAsync._management_request_async``: the $management link (hub and partition properties).

Used by streampod's own tests; it patches SDK internals and so is pinned to the SDK's 5.x layout.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import pytest
from azure.eventhub._pyamqp._decode import decode_payload
from azure.eventhub._pyamqp.error import AMQPLinkError, ErrorCondition
from azure.eventhub._pyamqp.message import BatchMessage, Message
from azure.eventhub.aio import _client_base_async, _consumer_async, _producer_async

SEQ, OFFSET, KEY, TIME = b"x-opt-sequence-number", b"x-opt-offset", b"x-opt-partition-key", b"x-opt-enqueued-time"


@dataclass
class Stored:
    sequence_number: int
    offset: str
    enqueued_ms: int
    message: Message


@dataclass
class MemoryHub:
    name: str
    partitions: list[list[Stored]]
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    _round_robin: Iterator[int] = field(default_factory=lambda: itertools.count())

    def partition_for(self, key: bytes | str | None) -> int:
        if key is None:
            return next(self._round_robin) % len(self.partitions)
        raw = key.encode() if isinstance(key, str) else key
        return zlib.crc32(raw) % len(self.partitions)

    def append(self, message: Message) -> Stored:
        annotations = dict(message.message_annotations or {})
        index = self.partition_for(annotations.get(KEY))
        part = self.partitions[index]
        seq = len(part)
        # Offsets differ from sequence numbers on purpose, so that mixing them up shows in tests.
        stored = Stored(seq, str(1000 + 10 * seq), int(time.time() * 1000), message)
        annotations.update({SEQ: seq, OFFSET: stored.offset.encode(), TIME: stored.enqueued_ms})
        stored.message = message._replace(message_annotations=annotations)
        part.append(stored)
        return stored

    def events(self, partition: int) -> list[Stored]:
        return list(self.partitions[partition])


class MemoryNamespace:
    """Hubs by name; ``install`` routes every SDK client of the test process to them."""

    def __init__(self, max_message_size: int = 1_048_576) -> None:
        self.hubs: dict[str, MemoryHub] = {}
        self.max_message_size = max_message_size
        #: Exceptions the next sends raise instead of storing (one per send, in order).
        self.send_failures: list[Exception] = []
        self.sends = 0
        #: Encoded size of each batch sent, as the service would receive it.
        self.batch_sizes: list[int] = []
        #: When set, sends wait for it: a send still in flight.
        self.send_gate: asyncio.Event | None = None
        self._receivers: dict[tuple[str, str, int], _ReceiveLink] = {}

    def create_hub(self, name: str, partitions: int) -> MemoryHub:
        hub = self.hubs[name] = MemoryHub(name, [[] for _ in range(partitions)])
        return hub

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        namespace = self

        async def producer_open(producer: Any) -> None:
            if not producer.running:
                producer._handler = _SendLink(namespace, producer._client.eventhub_name)
                producer._max_message_size_on_link = namespace.max_message_size
                producer.running = True

        async def consumer_open(consumer: Any) -> None:
            if not consumer.running:
                if consumer._handler is not None:
                    await consumer._handler.close_async()
                consumer._handler = _ReceiveLink(namespace, consumer)
                consumer.running = True

        async def management(client: Any, mgmt_msg: Any, op_type: bytes) -> Any:
            props = mgmt_msg.application_properties
            hub = namespace._hub(_text(props["name"]))
            if "partition" not in props:
                ids = [str(i).encode() for i in range(len(hub.partitions))]
                return _Reply({b"name": hub.name.encode(), b"created_at": hub.created_ms, b"partition_ids": ids})
            part = hub.partitions[int(_text(props["partition"]))]
            last = part[-1] if part else None
            return _Reply(
                {
                    b"name": hub.name.encode(),
                    b"partition": _text(props["partition"]).encode(),
                    b"begin_sequence_number": 0,
                    b"last_enqueued_sequence_number": last.sequence_number if last else -1,
                    b"last_enqueued_offset": (last.offset if last else "-1").encode(),
                    b"is_partition_empty": last is None,
                    b"last_enqueued_time_utc": last.enqueued_ms if last else 0,
                }
            )

        monkeypatch.setattr(_producer_async.EventHubProducer, "_open", producer_open)
        monkeypatch.setattr(_consumer_async.EventHubConsumer, "_open", consumer_open)
        monkeypatch.setattr(_client_base_async.ClientBaseAsync, "_management_request_async", management)

    def _hub(self, name: str) -> MemoryHub:
        try:
            return self.hubs[name]
        except KeyError:
            raise AMQPLinkError(ErrorCondition.NotFound, description=f"no event hub {name!r}") from None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class _Reply:
    value: dict[bytes, Any]


class _Link:
    """What the SDK reads from a link: the peer's message size limit."""

    def __init__(self, max_message_size: int) -> None:
        self.remote_max_message_size = max_message_size


class _SendLink:
    def __init__(self, namespace: MemoryNamespace, hub: str) -> None:
        self._namespace = namespace
        self._hub = namespace._hub(hub)
        self._link = _Link(namespace.max_message_size)

    # The SDK passes ``timeout=``; the fake never waits, so it has no use for it.
    async def send_message_async(self, message: Message | BatchMessage, timeout: float = 0) -> None:  # noqa: ASYNC109
        ns = self._namespace
        ns.sends += 1
        if ns.send_gate is not None:
            await ns.send_gate.wait()
        if ns.send_failures:
            raise ns.send_failures.pop(0)
        if isinstance(message, BatchMessage):
            encoded_messages = cast(list[bytes], message.data)
            ns.batch_sizes.append(sum(len(m) for m in encoded_messages))
            for encoded in encoded_messages:
                self._hub.append(decode_payload(memoryview(encoded)))
        else:
            self._hub.append(message)

    async def close_async(self) -> None:
        return None


class _ReceiveLink:
    """One partition receiver: delivers stored messages from the position the SDK asked for."""

    def __init__(self, namespace: MemoryNamespace, consumer: Any) -> None:
        # The SDK's source address: .../<hub>/ConsumerGroups/<group>/Partitions/<id>
        parts = str(consumer._source).split("/")
        self._hub = namespace._hub(parts[-5])
        self._group = parts[-3].lower()
        self._partition = int(parts[-1])
        self._consumer = consumer
        self._position = self._resolve(consumer._offset, bool(consumer._offset_inclusive))
        self._stolen = False
        self._closed = False
        key = (self._hub.name, self._group, self._partition)
        previous = namespace._receivers.get(key)
        if previous is not None and consumer._owner_level is not None:
            previous._stolen = True  # an epoch receiver takes the partition from the older one
        namespace._receivers[key] = self
        self._namespace = namespace
        self._key = key

    def _resolve(self, position: Any, inclusive: bool) -> int:
        events = self._hub.partitions[self._partition]
        if position in (None, "-1", -1):
            return 0
        if position == "@latest":
            return len(events)
        if isinstance(position, datetime):
            ms = position.timestamp() * 1000
            return next(
                (i for i, e in enumerate(events) if e.enqueued_ms > ms or (inclusive and e.enqueued_ms == ms)),
                len(events),
            )
        if isinstance(position, int):
            return max(0, position if inclusive else position + 1)
        index = next((i for i, e in enumerate(events) if e.offset == str(position)), None)
        if index is None:
            raise AMQPLinkError(ErrorCondition.InvalidField, description=f"no event at offset {position}")
        return index if inclusive else index + 1

    async def do_work_async(self, batch: int = 300) -> bool:
        if self._stolen:
            raise AMQPLinkError(
                ErrorCondition.LinkStolen, description="a receiver with a higher epoch took the partition"
            )
        events = self._hub.partitions[self._partition][self._position : self._position + batch]
        last = self._hub.partitions[self._partition][-1] if self._hub.partitions[self._partition] else None
        for stored in events:
            message = stored.message
            if last is not None:
                message = message._replace(
                    delivery_annotations={
                        b"last_enqueued_sequence_number": last.sequence_number,
                        b"last_enqueued_offset": last.offset.encode(),
                        b"last_enqueued_time_utc": last.enqueued_ms,
                        b"runtime_info_retrieval_time_utc": int(time.time() * 1000),
                    }
                )
            await self._consumer._amqp_transport.message_received_async(self._consumer, message)
        self._position += len(events)
        if not events:
            await asyncio.sleep(0.02)
        return True

    async def close_async(self) -> None:
        if self._namespace._receivers.get(self._key) is self:
            del self._namespace._receivers[self._key]
