"""How fast the host is right now: the shared transform timed on each CPU in turn, around every point.

The machines are shared: the same code has measured 30 % apart within a minute, and whole reports
apart by a factor of two for the multi-process variants, on a host whose load average looked quiet.
A ratio is only fair when both of its variants ran on a host of the same speed, so every point is
bracketed by this probe (a fraction of a second, before the variant starts and after it stops) and
the report shows its median per row. It is the job's own work (parse one 1 KB value, add a field,
serialise), pinned to one CPU at a time, because a slow CPU costs a variant that needs both of them
more than one that fits on one.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Final

from streampod.bench.transform import transform
from streampod.bench.workload import Values

SECONDS_PER_CPU: Final = 0.1
_VALUE: Final = Values(1000).value(1, 1_763_800_000_000)


def _time_transform(seconds: float) -> float:
    """Microseconds per transform, over at least ``seconds`` of this thread's CPU time."""
    n = 0
    start = time.thread_time()
    deadline = start + seconds
    now = start
    while now < deadline:
        for _ in range(100):
            transform(_VALUE)
        n += 100
        now = time.thread_time()
    return (now - start) / n * 1e6


def probe(seconds_per_cpu: float = SECONDS_PER_CPU) -> dict[str, float]:
    """Microseconds per transform of one 1 KB value on each CPU this process may use: ``{"cpu0": 6.1, ...}``.

    Timed in thread CPU time, so a CPU shared with the rest of the bench still counts only the
    probe's own cycles: a slower figure means a slower CPU, not a busier one. Where the platform
    cannot pin a thread, one figure, ``"any"``.
    """
    if not hasattr(os, "sched_getaffinity"):
        return {"any": round(_time_transform(seconds_per_cpu), 2)}
    allowed = os.sched_getaffinity(0)
    out: dict[str, float] = {}
    try:
        for cpu in sorted(allowed):
            os.sched_setaffinity(0, {cpu})
            out[f"cpu{cpu}"] = round(_time_transform(seconds_per_cpu), 2)
    finally:
        os.sched_setaffinity(0, allowed)
    return out


def summary(figures: list[dict[str, float]]) -> float | None:
    """One number for a point: the median over its probes and CPUs."""
    values = [v for f in figures for v in f.values()]
    return round(statistics.median(values), 2) if values else None
