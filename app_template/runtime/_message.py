"""What the user's code receives and returns: Message, Output, Reject, Retry."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final, Literal

from streampod.contract import Source

OutEncoding = Literal["json", "text", "base64"]


class _Same(enum.Enum):
    """Marks an Output field that takes its value from the input message."""

    AS_INPUT = "as input"


#: The default of ``Output.key``: the input's key, which keeps per-key order downstream.
AS_INPUT: Final = _Same.AS_INPUT


@dataclass(slots=True)
class Message:
    """One input record, its value already decoded.

    ``value`` is parsed JSON for encoding ``json``; for ``text`` the string parsed as JSON when it is
    JSON, else the string; ``bytes`` for ``base64``. With an ``InputModel`` it is the model instance.
    ``source`` says where the record was read (``topic``, ``partition``, ``offset``, ``timestamp``),
    or is None when the sender did not say.
    """

    id: str
    key: str | None
    value: Any
    headers: dict[str, str]
    source: Source | None = None


@dataclass(slots=True)
class Output:
    """One output record.

    ``key`` defaults to the input's key (so the output keeps its per-key order downstream; pass
    ``key=None`` for no key), ``headers`` to the input's headers. ``topic`` names a destination from
    the output writer's allow-list. ``encoding`` defaults to ``base64`` for bytes, ``text`` for a
    str and ``json`` for anything else (dicts, lists, numbers, pydantic models, dataclasses).
    """

    value: Any
    key: str | _Same | None = AS_INPUT
    headers: dict[str, str] | None = None
    topic: str | None = None
    encoding: OutEncoding | None = None


class Reject(Exception):
    """Raise for a message that can never succeed: it is dead-lettered with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Retry(Exception):
    """Raise for a message that may succeed later (a dependency is down): it is sent again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
