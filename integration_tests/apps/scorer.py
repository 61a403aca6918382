"""A model stand-in for rollout tests: scores each input; SCORER_VARIANT=candidate differs on purpose.

The candidate adds 0.001 to every score (within a 0.01 tolerance) and 1.0 to every tenth (a real
difference), so a comparison must find exactly the tenth inputs.
"""

from __future__ import annotations

import os
from typing import Any

from streampod.app import Message

CANDIDATE = os.environ.get("SCORER_VARIANT") == "candidate"


def process(message: Message) -> dict[str, Any]:
    seq = message.value["seq"]
    score = seq * 0.5
    if CANDIDATE:
        score += 1.0 if seq % 10 == 0 else 0.001
    return {"key": message.value["key"], "seq": seq, "score": score}
