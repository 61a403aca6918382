"""Profiles of the streampod variant's three processes during a drain: py-spy or pyinstrument.

- ``py-spy``: attached to each running process (sampling from outside, so the services run
  unchanged), counting only the thread that holds the GIL; the raw collapsed stacks are kept, and
  the functions with the most samples, on top of the stack (self) and anywhere in it (total), are
  summarised per process.
- ``pyinstrument``: each service is started under ``python -m pyinstrument`` and writes its text
  report when it exits (it samples the main thread: the event loop, not librdkafka's threads).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Final

import psutil

KINDS: Final = ("py-spy", "pyinstrument")
SAMPLE_RATE: Final = 200
TOP: Final = 15
# py-spy's raw frames read "function (path/to/file.py:line)".
_FRAME: Final = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed (pip install 'streampod[bench]')")
    return found


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    parts = Path(path).parts
    return "/".join(parts[-2:])


def _label(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    return f"{_short(m['file'])}:{m['func']}" if m else frame.strip()


def summarise_collapsed(text: str, top: int = TOP) -> dict[str, Any]:
    """Self and total sample counts per function from collapsed stacks ("f1;f2;f3 count" lines)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_label(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for f in set(frames):
            total[f] += count

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100.0 * n / samples, 1)) for f, n in c.most_common(top)] if samples else []

    return {"samples": samples, "self_pct": share(own), "total_pct": share(total)}


class Profiler:
    def __init__(self, kind: str, workdir: Path) -> None:
        if kind not in KINDS:
            raise ValueError(f"profile with one of {', '.join(KINDS)}, not {kind!r}")
        self.kind = kind
        self.dir = workdir / "profile"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._spies: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self._reports: dict[str, Path] = {}

    def wrap_argv(self, name: str, argv: list[str]) -> list[str]:
        """pyinstrument: run the component under it; py-spy: unchanged."""
        if self.kind != "pyinstrument":
            return argv
        report = self.dir / f"{name}.pyinstrument.txt"
        self._reports[name] = report
        python, rest = argv[0], argv[1:]
        if rest[:1] == ["-m"]:
            rest = rest[1:]
        return [python, "-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(report), "-m", *rest]

    def attach(self, named: dict[str, psutil.Process]) -> None:
        if self.kind != "py-spy":
            return
        spy = _py_spy()
        for name, proc in named.items():
            raw = self.dir / f"{name}.py-spy.txt"
            # --gil: only samples of the thread holding the GIL, i.e. where Python itself spends the
            # process's one core; threads waiting in librdkafka or a queue would only add noise.
            argv = [spy, "record", "--pid", str(proc.pid), "--rate", str(SAMPLE_RATE), "--format", "raw",
                    "--gil", "--nonblocking", "--output", str(raw)]  # fmt: skip
            log = (self.dir / f"{name}.py-spy.log").open("wb")
            self._spies.append((name, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), raw))

    def finish(self) -> dict[str, Any]:
        """After the processes exited: the summaries, and where the full profiles are."""
        out: dict[str, Any] = {"kind": self.kind, "dir": str(self.dir), "processes": {}}
        for name, spy, raw in self._spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.terminate()
                spy.wait(5)
            text = raw.read_text(errors="replace") if raw.exists() else ""
            out["processes"][name] = summarise_collapsed(text)
        for name, report in self._reports.items():
            out["processes"][name] = {"report": str(report), "written": report.exists()}
        return out
