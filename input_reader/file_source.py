"""File input: replay a JSON-lines file through the pipeline, with no broker.

Each line is either an envelope ``{"key": ..., "value": ..., "headers": {...}}`` (with an optional
``"encoding"`` of ``"text"`` or ``"base64"`` for a string value) or, if it is anything else, the
value itself. The file is one partition whose offsets are line numbers. A line that is not JSON is
passed on as raw bytes, so the reader's own checks dead-letter it with the reason.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from streampod.source import InRecord, PartitionId, PartitionListener, Source


class FileSource(Source):
    system = "file"

    def __init__(self, path: Path, *, follow: bool = False) -> None:
        self.path = path
        self.follow = follow
        self.pid = PartitionId(str(path), 0)
        self._file: IO[bytes] | None = None
        self._line = 0
        self._eof = False
        self._committed: int | None = None
        self._paused = False

    async def start(self, listener: PartitionListener) -> None:
        self._file = self.path.open("rb")
        listener.on_assigned([self.pid])

    async def poll(self, max_records: int, timeout_s: float) -> list[InRecord]:
        assert self._file is not None
        records: list[InRecord] = []
        while len(records) < max_records and not self._paused:
            raw = self._file.readline()
            if not raw or (self.follow and not raw.endswith(b"\n")):
                # At the end (or a line still being written): wait for more, or stop.
                if raw:
                    self._file.seek(-len(raw), 1)
                self._eof = not self.follow
                break
            line = raw.rstrip(b"\r\n")
            if line.strip():
                records.append(self._record(line))
            self._line += 1
        if not records:
            await asyncio.sleep(timeout_s)
        return records

    def _record(self, line: bytes) -> InRecord:
        key: bytes | None = None
        value: bytes | None = line
        headers = None
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and "value" in doc:
            key = _key(doc.get("key"))
            value = _value(doc["value"], doc.get("encoding", "json"))
            headers = [(str(k), str(v).encode()) for k, v in (doc.get("headers") or {}).items()]
        return InRecord(self.pid, self._line, key, value, headers, timestamp=None)

    def pause(self, partitions: Sequence[PartitionId]) -> None:
        # Reading is on demand: a paused file is simply not read further until resumed.
        self._paused = True

    def resume(self, partitions: Sequence[PartitionId]) -> None:
        self._paused = False

    def request_commit(self, offsets: Mapping[PartitionId, int]) -> None:
        self._committed = offsets.get(self.pid, self._committed)

    def committed(self, partition: PartitionId) -> int | None:
        return self._committed

    def ready(self) -> tuple[bool, str]:
        return self._file is not None, str(self.path)

    def at_end(self) -> bool:
        return self._eof

    async def close(self, final_offsets: Mapping[PartitionId, int]) -> None:
        self.request_commit(final_offsets)
        if self._file is not None:
            self._file.close()


def _key(key: Any) -> bytes | None:
    return None if key is None else str(key).encode()


def _value(value: Any, encoding: Any) -> bytes | None:
    if value is None:
        return None
    if encoding == "base64" and isinstance(value, str):
        return base64.b64decode(value)
    if encoding == "text" and isinstance(value, str):
        return value.encode()
    return orjson.dumps(value)
