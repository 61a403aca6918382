"""A fetched record on its way to the app: its contract id, its wire form, and what went wrong so far."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import msgspec

from streampod.contract import Encoding, Source, wire_value
from streampod.errors import ContractError
from streampod.source import InRecord


class Wire(msgspec.Struct, gc=False):
    """A contract v1 message as the reader sends it: ``contract.Message`` without the writer's ``topic``.

    A struct rather than two dicts: built per record fetched, and both built and encoded in about
    half the time.
    """

    id: str
    key: str | None
    value: Any
    encoding: Encoding
    headers: dict[str, str]
    source: Source


# A msgspec struct rather than a dataclass: one is built per record fetched, at half the cost.
class Entry(msgspec.Struct, gc=False):
    record: InRecord
    id: str
    #: The contract v1 message (batch mode); None when ``error`` is set.
    wire: Wire | None
    size: int
    #: Why the reader itself cannot deliver this record (bad JSON, too large, ...): dead-letter it.
    error: str | None = None
    #: How many times the app answered "retry" for it.
    attempts: int = 0


class Outcome(NamedTuple):
    status: Literal["ok", "retry", "reject", "requeue"]
    error: str | None = None
    #: Who decided: "app" (its answer) or "reader" (delivery gave up).
    stage: str = "app"


OK = Outcome("ok")
REQUEUE = Outcome("requeue")


def make_entry(record: InRecord, *, system: str, encoding: Encoding, max_bytes: int) -> Entry:
    """Build the wire message once, at fetch time, so retries and splits re-use it."""
    p = record.partition
    entry_id = f"{p.topic}-{p.partition}-{record.offset}"
    size = len(record.value or b"") + len(record.key or b"")
    try:
        if size > max_bytes:
            raise ContractError(f"message of {size} bytes exceeds STREAMPOD_MAX_MESSAGE_BYTES={max_bytes}")
        key = _text(record.key, "key")
        headers = {}
        if record.headers:
            headers = {name: _text(value, f"header {name!r}") or "" for name, value in record.headers}
        value, enc = wire_value(record.value, encoding)
    except ContractError as exc:
        return Entry(record, entry_id, None, size, error=str(exc))
    source = Source(system, p.topic, p.partition, record.offset, record.timestamp)
    return Entry(record, entry_id, Wire(entry_id, key, value, enc, headers, source), size)


def _text(raw: bytes | None, what: str) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ContractError(f"{what} is not valid UTF-8") from None
