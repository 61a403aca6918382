"""LocalStage's start-up wait: a container that finishes before its health check is seen."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from streampod.ports import free_port
from streampod.stage import Component


def _quick_exit(tmp_path: Path, code: int) -> Component:
    argv = [sys.executable, "-c", f"raise SystemExit({code})"]
    c = Component("input-reader", argv, dict(os.environ), free_port(), tmp_path / "c.log")
    c.start()
    assert c.wait(30) == code
    return c


def test_a_clean_exit_counts_as_started_only_where_the_caller_allows_it(tmp_path: Path) -> None:
    c = _quick_exit(tmp_path, 0)
    c.wait_until("/healthz", 5, may_finish=True)
    with pytest.raises(RuntimeError, match="exited with 0"):
        c.wait_until("/healthz", 5)
    c.close()


def test_a_failed_exit_is_an_error_even_where_finishing_is_allowed(tmp_path: Path) -> None:
    c = _quick_exit(tmp_path, 3)
    with pytest.raises(RuntimeError, match="exited with 3"):
        c.wait_until("/healthz", 5, may_finish=True)
    c.close()
