"""Exponential backoff with full jitter, so that many senders do not retry in step."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.1
    max_s: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt`` + 1 (``attempt`` counts from 1)."""
        ceiling = min(self.max_s, self.initial_s * 2 ** min(attempt - 1, 30))
        return random.uniform(ceiling / 2, ceiling)
