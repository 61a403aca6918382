"""HTTP contract v1: the wire format between input reader, app and output writer.

The pydantic models are the specification and give readable 400 reasons; the hot path parses a
whole batch in one ``validate_json`` call (pydantic-core, no per-message Python) and encodes with
orjson. ``value`` is decoded per ``encoding`` only where it is used, so a bad value becomes a
per-message error rather than a failed batch.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from streampod.errors import ContractError

MESSAGES_PATH = "/v1/messages"
MESSAGE_PATH = "/v1/message"

Encoding = Literal["json", "text", "base64"]
Status = Literal["ok", "retry", "reject"]

#: HTTP headers of the single-message mode (for apps in any language).
H_ID = "streampod-id"
H_KEY = "streampod-key"
H_TOPIC = "streampod-topic"
H_HEADER_PREFIX = "streampod-header-"
H_SOURCE_PREFIX = "streampod-source-"


class _Model(BaseModel):
    # Unknown fields are ignored so that v1 can grow by addition without breaking old peers.
    model_config = ConfigDict(frozen=True, extra="ignore")


class Source(_Model):
    """Where a message came from: set by the input reader, passed to the app."""

    system: str
    topic: str
    partition: int
    offset: int
    timestamp: int | None = None


class Message(_Model):
    id: str = Field(min_length=1)
    key: str | None = None
    value: Any = None
    encoding: Encoding = "json"
    headers: dict[str, str] = Field(default_factory=dict)
    source: Source | None = None
    #: Toward the output writer only: a destination from its allow-list.
    topic: str | None = None


class MessageBatch(_Model):
    messages: list[Message]


class Result(_Model):
    id: str
    status: Status
    error: str | None = None


class ResultBatch(_Model):
    results: list[Result]


_batch_adapter: TypeAdapter[MessageBatch] = TypeAdapter(MessageBatch)
_results_adapter: TypeAdapter[ResultBatch] = TypeAdapter(ResultBatch)


def _reason(exc: ValidationError, limit: int = 5) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def parse_batch(body: bytes) -> list[Message]:
    """Parse a request body; raise ContractError with the reason for a 400."""
    try:
        batch = _batch_adapter.validate_json(body)
    except ValidationError as exc:
        raise ContractError(f"malformed batch: {_reason(exc)}") from None
    seen: set[str] = set()
    for m in batch.messages:
        if m.id in seen:
            raise ContractError(f"malformed batch: duplicate id {m.id!r}")
        seen.add(m.id)
    return batch.messages


def parse_results(body: bytes, ids: Iterable[str]) -> dict[str, Result]:
    """Parse a reply and check a result is owed for every id sent, and only those."""
    try:
        results = _results_adapter.validate_json(body).results
    except ValidationError as exc:
        raise ContractError(f"malformed reply: {_reason(exc)}") from None
    by_id = {r.id: r for r in results}
    wanted = set(ids)
    missing = wanted - by_id.keys()
    if missing:
        raise ContractError(f"reply has no result for {len(missing)} id(s), e.g. {sorted(missing)[0]!r}")
    extra = by_id.keys() - wanted
    if extra:
        raise ContractError(f"reply has results for unknown id(s), e.g. {sorted(extra)[0]!r}")
    return by_id


def encode_results(results: Iterable[Result | Mapping[str, Any]]) -> bytes:
    out = [r.model_dump(exclude_none=True) if isinstance(r, Result) else r for r in results]
    return orjson.dumps({"results": out})


def encode_batch(messages: Iterable[Mapping[str, Any]]) -> bytes:
    """Encode wire dicts; a ``value`` may be an ``orjson.Fragment`` of already-checked JSON."""
    return orjson.dumps({"messages": list(messages)})


def value_to_bytes(value: Any, encoding: Encoding) -> bytes | None:
    """The payload bytes a message stands for; raise ContractError when value and encoding disagree."""
    if value is None:
        return None
    if encoding == "json":
        return orjson.dumps(value)
    if not isinstance(value, str):
        raise ContractError(f"value must be a string for encoding {encoding!r}")
    if encoding == "text":
        return value.encode()
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ContractError("value is not valid base64") from None


def decode_value(value: Any, encoding: Encoding) -> Any:
    """The value as the app sees it: parsed JSON, a str, or bytes."""
    if encoding == "json" or value is None:
        return value
    if not isinstance(value, str):
        raise ContractError(f"value must be a string for encoding {encoding!r}")
    if encoding == "text":
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ContractError("value is not valid base64") from None


def wire_value(payload: bytes | None, encoding: Encoding) -> tuple[Any, Encoding]:
    """Turn raw payload bytes into a wire ``value`` in the requested encoding.

    ``json`` checks the bytes are JSON and embeds them without re-encoding (``orjson.Fragment``);
    ``text`` falls back to ``base64`` for bytes that are not UTF-8, so nothing is lost.
    Raises ContractError when ``json`` is asked for and the payload is not JSON.
    """
    if payload is None:
        return None, encoding
    if encoding == "json":
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ContractError(f"payload is not valid JSON: {exc.msg}") from None
        return orjson.Fragment(payload), "json"
    if encoding == "text":
        try:
            return payload.decode(), "text"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(payload).decode("ascii"), "base64"
