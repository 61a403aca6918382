"""The test transform, on streampod's runtime: adds a field; rejects and raises on chosen messages."""

from __future__ import annotations

from typing import Any

from streampod.app import Message, Reject


def process(message: Message) -> dict[str, Any]:
    value = dict(message.value)
    if value.get("reject"):
        raise Reject("asked to reject")
    if value.get("explode"):
        raise ValueError("boom")
    value["processed"] = True
    return value
