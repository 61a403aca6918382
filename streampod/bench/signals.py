"""Graceful stop for the benchmark's own consumer loops (the baseline reader, the in-process limit)."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def stop_event() -> threading.Event:
    """An event that SIGTERM or SIGINT sets: the loop finishes its step, then flushes and commits."""
    event = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return event
