"""HTTP contract v1: the wire format between input reader, app and output writer.

The msgspec structs below are the specification. A whole batch is parsed in one ``decode`` call
(msgspec, no per-message Python). The app's ``parse_batch`` parses the values too; only when a
value has no Python value does it parse the batch again with the values kept raw, so that
``decode_value`` makes that message's error rather than a failed batch. The output writer's
``parse_raw_batch`` keeps every value as the JSON text that was sent (``msgspec.Raw``) and hands
those bytes to the producer without parsing and re-encoding them. Batches are encoded with msgspec,
which embeds a ``msgspec.Raw`` value as it is (docs/benchmark.md has the measurements behind both).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

import msgspec
import orjson

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

#: The header on every output (and dead letter): the input it came from, as
#: ``topic/partition/offset`` or ``topic/partition/offset@timestamp``. One header rather than one per
#: field: librdkafka's ``produce`` pays per header, and five of them were a fifth of the output
#: writer's instructions at 100 B (docs/benchmark.md). Read it with ``parse_source_header``.
H_SOURCE = "streampod-source"
#: On an output whose input came without coordinates (a batch posted by other means): the input's id.
H_SOURCE_ID = "streampod-source-id"
#: On a dead letter: why it could not be delivered (read by the rollout comparison as the error).
H_ERROR = "streampod-error"

_Id = Annotated[str, msgspec.Meta(min_length=1)]


# Unknown fields are ignored (msgspec's default) so that v1 can grow by addition without breaking old peers.
class Source(msgspec.Struct, frozen=True, gc=False):
    """Where a message came from: set by the input reader, passed to the app."""

    system: str
    topic: str
    partition: int
    offset: int
    timestamp: int | None = None


class Message(msgspec.Struct, frozen=True, gc=False):
    """One message of a batch, its ``value`` parsed (what the app's code works on)."""

    id: _Id
    key: str | None = None
    value: Any = None
    encoding: Encoding = "json"
    headers: dict[str, str] = {}
    source: Source | None = None
    #: Toward the output writer only: a destination from its allow-list.
    topic: str | None = None


class RawMessage(msgspec.Struct, frozen=True, gc=False):
    """The same, its ``value`` kept as the JSON text that was sent (``msgspec.Raw``)."""

    id: _Id
    key: str | None = None
    value: msgspec.Raw = msgspec.Raw(b"null")
    encoding: Encoding = "json"
    headers: dict[str, str] = {}
    source: Source | None = None
    topic: str | None = None


class MessageBatch(msgspec.Struct, frozen=True, gc=False):
    messages: list[Message]


class RawMessageBatch(msgspec.Struct, frozen=True, gc=False):
    messages: list[RawMessage]


class Result(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    status: Status
    error: str | None = None


class ResultBatch(msgspec.Struct, frozen=True):
    results: list[Result]


_batch_decoder = msgspec.json.Decoder(MessageBatch)
_raw_batch_decoder = msgspec.json.Decoder(RawMessageBatch)
_results_decoder = msgspec.json.Decoder(ResultBatch)
_str_decoder = msgspec.json.Decoder(str)
_optional_str_decoder = msgspec.json.Decoder(str | None)
_any_decoder = msgspec.json.Decoder()
_raw_decoder = msgspec.json.Decoder(msgspec.Raw)
_encoder = msgspec.json.Encoder()
# What msgspec's decode raises for a body it cannot read: msgspec's own errors, and the Python
# ones it lets through for invalid UTF-8 inside a string and for nesting deeper than the stack.
_UNPARSABLE = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_AT = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>.*)`$", re.DOTALL)


def _reason(exc: Exception) -> str:
    """``messages.0.id: Expected `str`, got `int``` from msgspec's ``... - at `$.messages[0].id```."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 at byte {exc.start} of a string"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc)
    m = _AT.match(text)
    if m is None:
        return text
    # msgspec writes a map's value as `[...]` (it does not name the key): the map is named instead.
    path = re.sub(r"\[(\d+)\]", r".\1", m["path"].replace("[...]", "")).lstrip(".") or "body"
    return f"{path}: {m['msg']}"


def _check_ids(messages: list[Message] | list[RawMessage]) -> None:
    seen: set[str] = set()
    for m in messages:
        if m.id in seen:
            raise ContractError(f"malformed batch: duplicate id {m.id!r}")
        seen.add(m.id)


def source_header(topic: str, partition: int, offset: int, timestamp: int | None) -> str:
    """The value of ``H_SOURCE`` for an input's coordinates."""
    if timestamp is None:
        return f"{topic}/{partition}/{offset}"
    return f"{topic}/{partition}/{offset}@{timestamp}"


def parse_source_header(value: str) -> tuple[str, int | None]:
    """``(topic/partition/offset, timestamp or None)`` from an ``H_SOURCE`` value.

    The coordinates are returned as written (they pair an output with its input); the timestamp is
    the digits after the last ``@``, so a topic (a file path, for the file source) may hold ``@``.
    """
    coordinates, at, ts = value.rpartition("@")
    if at and ts.isdigit():
        return coordinates, int(ts)
    return value, None


def parse_batch(body: bytes) -> list[Message] | list[RawMessage]:
    """Parse a request body, values parsed; raise ContractError with the reason for a 400.

    A value that is JSON but has no Python value (a number beyond a double) would fail the whole
    decode: then the batch is parsed again with every value kept raw, and ``decode_value`` turns
    each into its message's own error.
    """
    try:
        messages: list[Message] = _batch_decoder.decode(body).messages
    except _UNPARSABLE:
        return parse_raw_batch(body)  # raises the reason when the batch itself is malformed
    _check_ids(messages)
    return messages


def parse_raw_batch(body: bytes) -> list[RawMessage]:
    """As ``parse_batch``, with every value kept as its JSON bytes (checked to be JSON, not parsed)."""
    try:
        messages: list[RawMessage] = _raw_batch_decoder.decode(body).messages
    except _UNPARSABLE as exc:
        raise ContractError(f"malformed batch: {_reason(exc)}") from None
    _check_ids(messages)
    return messages


def parse_results(body: bytes, ids: Sequence[str]) -> dict[str, Result]:
    """Parse a reply and check a result is owed for every id sent (unique, as in a batch), and only those."""
    try:
        results = _results_decoder.decode(body).results
    except _UNPARSABLE as exc:
        raise ContractError(f"malformed reply: {_reason(exc)}") from None
    by_id = {r.id: r for r in results}
    # As many distinct results as ids, each id among them: exactly those ids (no set to build).
    if len(by_id) == len(ids) and all(i in by_id for i in ids):
        return by_id
    wanted = set(ids)
    missing = wanted - by_id.keys()
    if missing:
        raise ContractError(f"reply has no result for {len(missing)} id(s), e.g. {sorted(missing)[0]!r}")
    extra = by_id.keys() - wanted
    if extra:
        raise ContractError(f"reply has results for unknown id(s), e.g. {sorted(extra)[0]!r}")
    return by_id


def encode_batch(messages: Iterable[Mapping[str, Any] | msgspec.Struct]) -> bytes:
    """Encode wire messages (dicts or structs); a ``msgspec.Raw`` value is embedded as it is."""
    return _encoder.encode({"messages": list(messages)})


def raw_value_to_bytes(value: msgspec.Raw, encoding: Encoding) -> bytes | None:
    """The payload bytes a RawMessage stands for; raise ContractError when value and encoding disagree."""
    raw = bytes(value)
    if raw == b"null":
        return None
    if encoding == "json":
        return raw
    try:
        text = _str_decoder.decode(raw)
    except msgspec.ValidationError:
        raise ContractError(f"value must be a string for encoding {encoding!r}") from None
    return value_to_bytes(text, encoding)


def value_to_bytes(value: Any, encoding: Encoding) -> bytes | None:
    """The payload bytes a parsed value stands for; raise ContractError when value and encoding disagree."""
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
    """The value as the app sees it: parsed JSON, a str, or bytes; ContractError with the reason if it cannot be.

    ``value`` is a parsed one or, from a batch parsed raw, a ``msgspec.Raw``.
    """
    if isinstance(value, msgspec.Raw):
        try:
            value = (_any_decoder if encoding == "json" else _optional_str_decoder).decode(value)
        except msgspec.ValidationError as exc:
            if encoding == "json":
                raise ContractError(f"value cannot be decoded: {exc}") from None
            raise ContractError(f"value must be a string for encoding {encoding!r}") from None
        except _UNPARSABLE as exc:
            raise ContractError(f"value cannot be decoded: {_reason(exc)}") from None
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

    ``json`` checks the bytes are JSON and embeds them without re-encoding (``msgspec.Raw``); the
    check is msgspec's scan of the structure plus a UTF-8 check of non-ASCII payloads, not a parse
    into Python objects (half the instructions at 100 B, a third at 1 KB). A value that is JSON but
    that the app cannot decode (a number beyond a double) is rejected by the app for that message alone.
    ``text`` falls back to ``base64`` for bytes that are not UTF-8, so nothing is lost.
    Raises ContractError when ``json`` is asked for and the payload is not JSON.
    """
    if payload is None:
        return None, encoding
    if encoding == "json":
        try:
            if not payload.isascii():
                payload.decode()
            return _raw_decoder.decode(payload), "json"
        except UnicodeDecodeError as exc:
            raise ContractError(f"payload is not valid JSON: not UTF-8 at byte {exc.start}") from None
        except (msgspec.DecodeError, RecursionError) as exc:
            raise ContractError(f"payload is not valid JSON: {_reason_text(exc)}") from None
    if encoding == "text":
        try:
            return payload.decode(), "text"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(payload).decode("ascii"), "base64"


def _reason_text(exc: BaseException) -> str:
    return str(exc).removeprefix("JSON is malformed: ")
