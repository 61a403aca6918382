"""The dead-letter destination: a message that can never succeed is written here with the reason.

A dead letter keeps the original key, value and headers, and adds headers saying why and where
from, so it can be inspected and replayed. Writing one is retried until it is acknowledged: the
source offset is committed only after that, so a dead letter is never lost either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from streampod.backoff import Backoff
from streampod.contract import H_ERROR, H_SOURCE, H_SOURCE_PREFIX, source_header
from streampod.metrics import ReaderMetrics
from streampod.sink import Delivery, OutRecord

from .entries import Entry

log = logging.getLogger(__name__)

H_STAGE = "streampod-error-stage"
H_ATTEMPTS = "streampod-attempts"
H_FAILED_AT = "streampod-failed-at"
_MAX_REASON = 1000


class RecordWriter(Protocol):
    async def write(self, records: Sequence[OutRecord]) -> list[Delivery]: ...


class DeadLetters:
    def __init__(
        self, writer: RecordWriter, destination: str, system: str, backoff: Backoff, metrics: ReaderMetrics
    ) -> None:
        self.writer = writer
        self.destination = destination
        self.system = system
        self.backoff = backoff
        self.metrics = metrics

    async def send(self, items: Sequence[tuple[Entry, str, str]]) -> None:
        """Write (entry, reason, stage) items; returns once every one is acknowledged."""
        records = [self._record(e, reason, stage) for e, reason, stage in items]
        attempt = 0
        while records:
            deliveries = await self.writer.write(records)
            failed = [(r, d) for r, d in zip(records, deliveries, strict=True) if not d.ok]
            for (entry, reason, stage), d in zip(items, deliveries, strict=True):
                if d.ok:
                    self.metrics.dead_lettered.labels(stage=stage).inc()
                    log.warning(
                        "message dead-lettered",
                        extra={
                            "id": entry.id,
                            "reason": reason,
                            "stage": stage,
                            "destination": self.destination,
                        },
                    )
            if not failed:
                return
            attempt += 1
            log.error(
                "dead-letter write failed, will retry",
                extra={"messages": len(failed), "error": failed[0][1].error, "destination": self.destination},
            )
            items = [i for i, d in zip(items, deliveries, strict=True) if not d.ok]
            records = [r for r, _ in failed]
            await asyncio.sleep(self.backoff.delay(attempt))

    def _record(self, e: Entry, reason: str, stage: str) -> OutRecord:
        r = e.record
        headers = list(r.headers or ())
        headers += [
            (H_ERROR, reason[:_MAX_REASON].encode()),
            (H_STAGE, stage.encode()),
            (H_ATTEMPTS, str(e.attempts).encode()),
            (H_FAILED_AT, str(int(time.time() * 1000)).encode()),
            # The same coordinates as on an output (a comparison pairs the two), and field by field for people.
            (H_SOURCE, source_header(r.partition.topic, r.partition.partition, r.offset, r.timestamp).encode()),
            (H_SOURCE_PREFIX + "system", self.system.encode()),
            (H_SOURCE_PREFIX + "topic", r.partition.topic.encode()),
            (H_SOURCE_PREFIX + "partition", str(r.partition.partition).encode()),
            (H_SOURCE_PREFIX + "offset", str(r.offset).encode()),
        ]
        if r.timestamp is not None:
            headers.append((H_SOURCE_PREFIX + "timestamp", str(r.timestamp).encode()))
        return OutRecord(self.destination, r.key, r.value, [(k, v or b"") for k, v in headers])
