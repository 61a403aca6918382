"""Quix Streams in a virtual environment of its own.

Its pins clash with ours (quixstreams 3.x wants confluent-kafka < 2.13; streampod runs a newer
one), so it gets ``${XDG_CACHE_HOME:-~/.cache}/streampod/bench-quix``, installed once with pip from
the package index and reused (a stamp file names the requirement it was installed for).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

REQUIREMENT: Final = "quixstreams>=3.20,<4"
INSTALL_TIMEOUT_S: Final = 900


def venv_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "streampod" / "bench-quix"


def python() -> Path:
    return venv_dir() / "bin" / "python"


def _stamp() -> Path:
    return venv_dir() / ".streampod-requirement"


def installed() -> str | None:
    """The installed Quix Streams version, or None when the environment is missing or stale."""
    stamp = _stamp()
    if not python().exists() or not stamp.exists() or stamp.read_text().strip() != REQUIREMENT:
        return None
    result = subprocess.run(
        [str(python()), "-c", "import importlib.metadata as m; print(m.version('quixstreams'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def ensure() -> tuple[str | None, str]:
    """Install when needed. Returns (version, "") or (None, why it could not be installed)."""
    version = installed()
    if version is not None:
        return version, ""
    target = venv_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    log = target.parent / "bench-quix-install.log"
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(target)],
        [str(python()), "-m", "pip", "install", "--quiet", REQUIREMENT],
    ]
    with log.open("w") as out:
        for step in steps:
            try:
                code = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S).returncode
            except subprocess.TimeoutExpired:
                return (None, f"`{' '.join(step[-2:])}` did not finish in {INSTALL_TIMEOUT_S} s (log: {log})")
            if code != 0:
                return (None, f"`{' '.join(step[-2:])}` failed with exit {code} (log: {log})")
    _stamp().write_text(REQUIREMENT + "\n")
    version = installed()
    return (version, "") if version else (None, f"installed, but quixstreams does not import (log: {log})")
