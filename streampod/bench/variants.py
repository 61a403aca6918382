"""The four variants as processes the harness starts, measures and stops."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import psutil
from prometheus_client.parser import text_string_to_metric_families

from streampod.bench import quixenv
from streampod.ports import free_port
from streampod.stage import LocalStage

STOP_TIMEOUT_S: Final = 30.0
HERE: Final = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Job:
    """Where one variant reads and writes in one measurement."""

    bootstrap: str
    topic_in: str
    topic_out: str
    group: str
    workdir: Path
    dead_letter_topic: str


class Variant(ABC):
    name: str
    title: str
    #: A hook for tools that run each process under another (a profiler, valgrind): (process, argv) -> argv.
    argv_wrapper: Callable[[str, list[str]], list[str]] | None = None
    #: Seconds each process may take to answer its health check (far more under valgrind).
    start_timeout_s: float = 60.0

    def _wrapped(self, name: str, argv: list[str]) -> list[str]:
        return argv if self.argv_wrapper is None else self.argv_wrapper(name, argv)

    def unavailable(self) -> str | None:
        """Why this variant cannot run here, or None."""
        return None

    @abstractmethod
    def start(self, job: Job) -> None: ...

    @abstractmethod
    def named_processes(self) -> dict[str, psutil.Process]: ...

    def processes(self) -> list[psutil.Process]:
        return list(self.named_processes().values())

    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def stop(self) -> dict[str, int | None]:
        """Stop gracefully (SIGTERM, then SIGKILL after a while); the exit codes by process."""

    @abstractmethod
    def logs(self) -> str: ...


class Crashable(ABC):
    """The optional ability ``streampod bench --crash`` needs: stop one process and start it again."""

    #: The processes that can be stopped and started again, by the names ``named_processes`` gives them.
    victims: tuple[str, ...]

    @abstractmethod
    def restart(self, victim: str, *, graceful: bool) -> float:
        """Stop ``victim`` and start it again at once.

        ``graceful=False``: SIGKILL, and the same process again, as a container runtime restarts a
        crashed container. ``graceful=True``: SIGTERM, wait for it to exit, and start a replacement,
        as a rolling update replaces a pod (a new pod name, so a new static group member). Returns
        the seconds from the signal until it was started again (and, where it has one, answered
        its health check).
        """


class _Proc:
    """One child process logging to a file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log
        self._argv, self._env = argv, env
        self._out: IO[bytes] = log.open("ab")
        self.popen = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, env=env)

    def restart(self, *, graceful: bool) -> None:
        """SIGKILL (or SIGTERM and its exit), then the same command again, logging to the same file."""
        if graceful:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.wait(STOP_TIMEOUT_S)
        else:
            self.popen.kill()
            self.popen.wait(10)
        self.popen = subprocess.Popen(self._argv, stdout=self._out, stderr=subprocess.STDOUT, env=self._env)

    def stop(self) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._out.close()
        return self.popen.returncode

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class _Processes(Variant):
    """A variant made of plain child processes."""

    def __init__(self) -> None:
        self._procs: list[_Proc] = []

    def _spawn(self, job: Job, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        job.workdir.mkdir(parents=True, exist_ok=True)
        self._procs.append(_Proc(name, self._wrapped(name, argv), job.workdir / f"{name}.log", env))

    def named_processes(self) -> dict[str, psutil.Process]:
        out = {}
        for p in self._procs:
            with contextlib.suppress(psutil.Error):
                out[p.name] = psutil.Process(p.popen.pid)
        return out

    def alive(self) -> bool:
        return bool(self._procs) and all(p.popen.poll() is None for p in self._procs)

    def stop(self) -> dict[str, int | None]:
        # Upstream first, like LocalStage: each process drains into one that still listens.
        codes = {p.name: p.stop() for p in reversed(self._procs)}
        self._procs = []
        return codes

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self._procs)

    def restart(self, victim: str, *, graceful: bool) -> float:
        started = time.monotonic()
        next(p for p in self._procs if p.name == victim).restart(graceful=graceful)
        return time.monotonic() - started


def _wait_http(port: int, proc: _Proc, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    raise TimeoutError(f"{proc.name} not answering on port {port} within {timeout_s} s:\n{proc.tail()}")


#: The services' own histograms (their /metrics), whose means say where a batch's time goes:
#: the reader's round trip holds the app's, which holds the writer's, which holds the broker's.
#: (component, histogram, key in the record, scale of its mean, column title in the report)
HOP_HISTOGRAMS: Final = (
    ("input-reader", "streampod_reader_batch_messages", "batch_messages", 1.0, "msgs / batch"),
    ("input-reader", "streampod_reader_batch_seconds", "reader_round_trip_ms", 1000.0, "reader → app answered ms"),
    ("app", "streampod_app_batch_seconds", "app_batch_ms", 1000.0, "app batch ms"),
    ("app", "streampod_app_process_seconds", "app_user_code_ms", 1000.0, "of it user code ms"),
    ("app", "streampod_app_forward_seconds", "app_forward_ms", 1000.0, "of it app → writer answered ms"),
    ("output-writer", "streampod_writer_batch_seconds", "writer_batch_ms", 1000.0, "writer batch ms (to the last ack)"),
)


def histogram_totals(text: str) -> dict[str, tuple[float, float]]:
    """``name -> (sum, count)`` of every histogram in a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        total = count = 0.0
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
        out[family.name] = (total, count)
    return out


class Streampod(Variant, Crashable):
    name = "streampod"
    title = "streampod (3 processes, contract v1)"
    victims = ("input-reader", "app", "output-writer")

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        #: Settings given to all three services (``bench --streampod-env``): the tuning under test.
        self.env = dict(env or {})
        self._stage: LocalStage | None = None

    def start(self, job: Job) -> None:
        self._stage = LocalStage(
            job.workdir,
            reader_env={
                "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS": job.bootstrap,
                "STREAMPOD_INPUT_TOPICS": job.topic_in,
                "STREAMPOD_CONSUMER_GROUP": job.group,
                "STREAMPOD_DEAD_LETTER_TOPIC": job.dead_letter_topic,
                **self.env,
            },
            app_env=self.env,
            writer_env={
                "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS": job.bootstrap,
                "STREAMPOD_OUTPUT_TOPIC": job.topic_out,
                **self.env,
            },
            app_module="streampod.bench.streampod_app",
        )
        for c in self._stage.components.values():
            c.argv = self._wrapped(c.name, c.argv)
        self._stage.start(self.start_timeout_s)

    def hop_means(self) -> dict[str, float | None]:
        """Mean batch size and time per hop since the start, from the services' own metrics."""
        scraped: dict[str, dict[str, tuple[float, float]]] = {}
        for component in {hop[0] for hop in HOP_HISTOGRAMS}:
            try:
                status, body = self.stage.components[component].get("/metrics")
            except OSError:
                continue
            if status == 200:
                scraped[component] = histogram_totals(body)
        out: dict[str, float | None] = {}
        for component, metric, key, scale, _ in HOP_HISTOGRAMS:
            total, count = scraped.get(component, {}).get(metric, (0.0, 0.0))
            out[key] = round(total / count * scale, 1) if count else None
        return out

    @property
    def stage(self) -> LocalStage:
        if self._stage is None:
            raise RuntimeError("not started")
        return self._stage

    def named_processes(self) -> dict[str, psutil.Process]:
        out = {}
        for c in self.stage.components.values():
            if c.proc is not None:
                with contextlib.suppress(psutil.Error):
                    out[c.name] = psutil.Process(c.proc.pid)
        return out

    def alive(self) -> bool:
        return all(c.alive() for c in self.stage.components.values())

    def stop(self) -> dict[str, int | None]:
        return self.stage.stop(STOP_TIMEOUT_S)

    def logs(self) -> str:
        return self.stage.logs()

    def restart(self, victim: str, *, graceful: bool) -> float:
        started = time.monotonic()
        if not graceful:
            self.stage.restart(victim, self.start_timeout_s)
            return time.monotonic() - started
        if self.stage.terminate(victim, STOP_TIMEOUT_S) is None:
            raise RuntimeError(f"{victim} did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM")
        c = self.stage.components[victim]
        if "STREAMPOD_GROUP_INSTANCE_ID" in c.env:
            # The replacement is another pod: another name, so another static member of the group.
            c.env["STREAMPOD_GROUP_INSTANCE_ID"] += "-replacement"
        self.stage.start_component(victim, self.start_timeout_s)
        return time.monotonic() - started


class Baseline(_Processes):
    name = "per-message"
    title = "per-message baseline (3 processes, 1 POST/msg)"

    def start(self, job: Job) -> None:
        py = [sys.executable, "-m", "streampod.bench.baseline_per_message"]
        writer_port, app_port = free_port(), free_port()
        self._spawn(
            job,
            "writer",
            [*py, "writer", "--port", str(writer_port), "--bootstrap", job.bootstrap, "--topic", job.topic_out],
        )
        _wait_http(writer_port, self._procs[-1], self.start_timeout_s)
        self._spawn(
            job, "app", [*py, "app", "--port", str(app_port), "--writer-url", f"http://127.0.0.1:{writer_port}/"]
        )
        _wait_http(app_port, self._procs[-1], self.start_timeout_s)
        self._spawn(
            job,
            "reader",
            [*py, "reader", "--bootstrap", job.bootstrap, "--topic", job.topic_in, "--group", job.group,
             "--app-url", f"http://127.0.0.1:{app_port}/"],
        )  # fmt: skip


class InProcess(_Processes, Crashable):
    name = "in-process"
    title = "in-process limit (1 process, confluent-kafka)"
    victims = ("inprocess",)

    def start(self, job: Job) -> None:
        self._spawn(
            job,
            "inprocess",
            [sys.executable, "-m", "streampod.bench.inprocess", "--bootstrap", job.bootstrap,
             "--input", job.topic_in, "--output", job.topic_out, "--group", job.group],
        )  # fmt: skip


class Quix(_Processes, Crashable):
    name = "quix"
    title = "Quix Streams (1 process)"
    victims = ("quix",)

    def __init__(self, install: bool) -> None:
        super().__init__()
        self._install = install
        self.version: str | None = None
        self._why = ""

    def unavailable(self) -> str | None:
        if self.version is None:
            if self._install:
                self.version, self._why = quixenv.ensure()
            else:
                self.version = quixenv.installed()
                self._why = f"not installed in {quixenv.venv_dir()} (run `streampod bench` without --smoke once)"
        return None if self.version else self._why

    def start(self, job: Job) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self._spawn(
            job,
            "quix",
            [str(quixenv.python()), str(HERE / "quix_app.py"), "--bootstrap", job.bootstrap,
             "--input", job.topic_in, "--output", job.topic_out, "--group", job.group,
             "--state-dir", str(job.workdir / "quix-state")],
            env,
        )  # fmt: skip


ALL: Final = ("streampod", "per-message", "in-process", "quix")


def make(name: str, *, install_quix: bool, streampod_env: Mapping[str, str] | None = None) -> Variant:
    if name == "streampod":
        return Streampod(streampod_env)
    if name == "per-message":
        return Baseline()
    if name == "in-process":
        return InProcess()
    if name == "quix":
        return Quix(install_quix)
    raise ValueError(f"unknown variant {name!r}; choose from {', '.join(ALL)}")
