"""Two model versions in one file, for the blue/green rollout test: MODEL_VARIANT names the one.

Each output says which variant made it; a message asking ``reject_if`` this variant is rejected, so
a test can tell whose dead letters went where.
"""

from __future__ import annotations

import os
from typing import Any

from streampod.app import Message, Reject

VARIANT = os.environ["MODEL_VARIANT"]


def process(message: Message) -> dict[str, Any]:
    value = dict(message.value)
    if value.get("reject_if") == VARIANT:
        raise Reject(f"variant {VARIANT} rejects this message")
    value["variant"] = VARIANT
    return value
