"""Run one pipeline stage locally: the three containers as separate processes talking HTTP.

Used by ``streampod run`` (the demo and file replay) and by the integration tests, which also
kill, restart and signal single containers through it. Each process logs to its own file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from streampod.ports import free_port

COMPONENTS = ("output-writer", "app", "input-reader")


@dataclass
class Ports:
    app: int = field(default_factory=free_port)
    writer: int = field(default_factory=free_port)
    reader_ops: int = field(default_factory=free_port)
    app_ops: int = field(default_factory=free_port)
    writer_ops: int = field(default_factory=free_port)


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    ops_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        self.close()  # a restart re-opens the log
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.ops_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_until(self, path: str, timeout: float, *, may_finish: bool = False) -> None:
        """Wait for ``path`` to answer 200; with ``may_finish``, a clean exit (0) before that counts too."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                if may_finish and self.proc is not None and self.proc.returncode == 0:
                    return
                raise RuntimeError(f"{self.name} exited with {self.proc and self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError):
                status, body = self.get(path)
                if status == 200:
                    return
                last = f"{status} {body}"
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not answering 200 on {path} within {timeout} s ({last}): {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class LocalStage:
    """The three containers of one stage, as processes of this machine."""

    def __init__(
        self,
        workdir: Path,
        *,
        reader_env: Mapping[str, str],
        app_env: Mapping[str, str] | None = None,
        writer_env: Mapping[str, str],
        app_module: str | None = None,
        app_argv: Sequence[str] | None = None,
        ports: Ports | None = None,
    ) -> None:
        self.workdir = workdir
        self.ports = ports or Ports()
        p = self.ports
        base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPOD_")}
        base["PYTHONUNBUFFERED"] = "1"
        py = [sys.executable, "-m", "streampod"]
        writer = {
            **base,
            "STREAMPOD_WRITER_PORT": str(p.writer),
            "STREAMPOD_OPS_PORT": str(p.writer_ops),
            "STREAMPOD_OPS_HOST": "127.0.0.1",
            **writer_env,
        }
        app = {
            **base,
            "STREAMPOD_APP_PORT": str(p.app),
            "STREAMPOD_OPS_PORT": str(p.app_ops),
            "STREAMPOD_OPS_HOST": "127.0.0.1",
            "STREAMPOD_OUTPUT_URL": f"http://127.0.0.1:{p.writer}",
            **(app_env or {}),
        }
        if app_module is not None:
            app["STREAMPOD_APP_MODULE"] = app_module
        reader = {
            **base,
            "STREAMPOD_APP_URL": f"http://127.0.0.1:{p.app}",
            "STREAMPOD_OPS_PORT": str(p.reader_ops),
            "STREAMPOD_OPS_HOST": "127.0.0.1",
            **reader_env,
        }
        workdir.mkdir(parents=True, exist_ok=True)
        self.components = {
            "output-writer": Component(
                "output-writer", [*py, "output-writer"], writer, p.writer_ops, workdir / "output-writer.log"
            ),
            "app": Component("app", list(app_argv) if app_argv else [*py, "app"], app, p.app_ops, workdir / "app.log"),
            "input-reader": Component(
                "input-reader", [*py, "input-reader"], reader, p.reader_ops, workdir / "input-reader.log"
            ),
        }

    def __getitem__(self, name: str) -> Component:
        return self.components[name]

    def start(self, timeout: float = 60.0, *, may_finish: Sequence[str] = ()) -> None:
        """Start downstream first, so that nothing is sent to a container that is not listening yet.

        ``may_finish`` names containers that may be done before their health check is seen: a reader of
        a short file replays it, answers for it and exits 0 within a fraction of a second.
        """
        for name in COMPONENTS:
            self.start_component(name, timeout, may_finish=name in may_finish)

    def start_component(self, name: str, timeout: float = 60.0, *, may_finish: bool = False) -> None:
        c = self.components[name]
        c.start()
        c.wait_until("/healthz", timeout, may_finish=may_finish)

    def kill(self, name: str) -> None:
        c = self.components[name]
        c.signal(signal.SIGKILL)
        c.wait(10)

    def terminate(self, name: str, timeout: float) -> int | None:
        """SIGTERM ``name`` and wait for it to drain and exit: its exit code, or None if it is still running."""
        c = self.components[name]
        c.signal(signal.SIGTERM)
        return c.wait(timeout)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        self.kill(name)
        self.start_component(name, timeout)

    def stop(self, timeout: float = 30.0) -> dict[str, int | None]:
        """SIGTERM upstream first, so that each container drains into one that still listens."""
        codes: dict[str, int | None] = {}
        for name in reversed(COMPONENTS):
            c = self.components[name]
            if c.alive():
                codes[name] = self.terminate(name, timeout)
                if codes[name] is None:
                    c.signal(signal.SIGKILL)
                    c.wait(5)
            else:
                codes[name] = c.proc.returncode if c.proc else None
            c.close()
        return codes

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{c.log_tail(40)}" for n, c in self.components.items())
