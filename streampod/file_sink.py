"""Records appended to a JSON-lines file: the destination of a local replay, no broker needed.

Each line is ``{"topic", "key", "value", "encoding", "headers"}`` with the field names of a
contract v1 message, so an output file reads like input: ``value`` is embedded JSON when the bytes
are JSON (``"encoding": "json"``), else a string (``"text"``), else base64 (``"base64"``). A key or
header that is not UTF-8 is written with backslash escapes. A batch is one write, flushed and
fsync'd before it is answered ok.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import msgspec

from streampod.contract import wire_value
from streampod.errors import ContractError
from streampod.sink import Delivery, OutRecord, Sink


def _text(data: str | bytes) -> str:
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="backslashreplace")


def line(record: OutRecord) -> bytes:
    try:
        value, encoding = wire_value(record.value, "json")
    except ContractError:
        value, encoding = wire_value(record.value, "text")
    out: dict[str, Any] = {
        "topic": record.topic or None,
        "key": None if record.key is None else _text(record.key),
        "value": value,
        "encoding": encoding,
        "headers": {k: _text(v) for k, v in record.headers or ()},
    }
    return msgspec.json.encode(out) + b"\n"  # msgspec: it embeds the checked JSON value as it is


class FileSink(Sink):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: IO[bytes] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._file = await asyncio.to_thread(self._open)

    def _open(self) -> IO[bytes]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.path.open("ab")

    async def write(self, records: Sequence[OutRecord]) -> list[Delivery]:
        if not records:
            return []
        data = b"".join(line(r) for r in records)
        try:
            # One batch at a time, so that concurrent requests never interleave their lines.
            async with self._lock:
                await asyncio.to_thread(self._append, data)
        except OSError as exc:
            return [Delivery(False, f"cannot write {self.path}: {exc.strerror or exc}")] * len(records)
        return [Delivery(True)] * len(records)

    def _append(self, data: bytes) -> None:
        if self._file is None:
            raise OSError(f"{self.path} is not open")
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def ready(self) -> tuple[bool, str]:
        if self._file is None or self._file.closed:
            return False, f"{self.path} is not open"
        return True, f"writing to {self.path}"

    async def close(self) -> None:
        async with self._lock:
            if self._file is not None:
                self._file.close()
