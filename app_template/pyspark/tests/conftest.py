"""Fixtures for the app's tests: the model to score with, and the app around it (no broker needed).

Spark starts once for the whole session (the first fixture that needs it pays the few seconds).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streampod.testing import AppHarness

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model/ as train.py wrote it; if it is not there yet, a model trained now into a temporary folder."""
    if (PROJECT / "model" / "model.json").exists():
        return PROJECT / "model"
    sys.path.insert(0, str(PROJECT))
    import train

    out = tmp_path_factory.mktemp("model")
    train.train(out)
    return out


@pytest.fixture(scope="session")
def app(model_dir: Path) -> Iterator[AppHarness]:
    """app.py in the real app runtime, its setup() run with STREAMPOD_MODEL_PATH=model_dir."""
    with AppHarness(PROJECT / "app.py", model_path=model_dir) as harness:
        yield harness
