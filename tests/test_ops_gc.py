"""The collector tuning every service applies at start (streampod.ops.tune_gc)."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator

import pytest

from streampod import ops


@pytest.fixture
def gc_state() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.usefixtures("gc_state")
def test_tune_gc_freezes_startup_objects_and_raises_thresholds() -> None:
    gc.unfreeze()
    gc.set_threshold(*ops._GC_DEFAULTS)
    ops.tune_gc()
    assert gc.get_threshold() == ops._GC_THRESHOLDS
    # The modules and classes loaded so far are out of every later collection.
    assert gc.get_freeze_count() > 1000


@pytest.mark.usefixtures("gc_state")
def test_tune_gc_keeps_thresholds_a_process_chose_itself() -> None:
    gc.unfreeze()
    gc.set_threshold(5000, 10, 10)
    ops.tune_gc()
    assert gc.get_threshold() == (5000, 10, 10)
    assert gc.get_freeze_count() == 0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(ops._malloc_trim() is None, reason="no glibc malloc_trim on this platform: nothing to trim")
def test_heap_trimmed_gives_free_pages_inside_the_heap_back() -> None:
    # 1 KB objects come from malloc, not pymalloc; keeping every 64th pins the heap's top and
    # leaves whole free pages in between, which glibc keeps until trimmed.
    chunks = [bytes(1000) + bytes([i % 256]) for i in range(100_000)]
    kept = chunks[::64]
    del chunks
    before = _rss_bytes()
    with ops.heap_trimmed(interval_s=0.01):
        time.sleep(0.2)
    after = _rss_bytes()
    assert kept
    assert before - after > 30 * 2**20, f"RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MB"
