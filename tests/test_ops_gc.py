"""The collector tuning every service applies at start (streampod.ops.tune_gc)."""

from __future__ import annotations

import gc
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
