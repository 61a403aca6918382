"""``streampod bench --count``: CPU per message as instructions counted by callgrind, not as seconds timed.

The drains' CPU seconds per message move ± 30 % with the host's neighbours, so a ratio between two
variants is only as good as the stretch of host it was measured on. Instructions do not depend on
the neighbours: every process of a variant runs under ``valgrind --tool=callgrind`` (all its threads,
librdkafka's included, counted together), drains ``warmup`` messages, has its counters zeroed
(``callgrind_control -z``), drains ``messages`` more, and has them dumped (``-d``) once the outputs
stopped growing: the instructions of that window divided by ``messages``.

What the count leaves out: the kernel (system calls, page faults, the loopback's copies), cache
misses, and GIL hand-offs between threads; so it ranks CPU per message, and the timed drains say what
it costs on a real host. Work that runs by the clock rather than per message (librdkafka's fetches
and timers, an idle event loop) is counted too, and under valgrind a window lasts 30 to 100 times longer
than a real drain, so each process's idle rate (10 s with nothing to do, counted right after) is
recorded, and "busy" subtracts it over the window: a lower bound of the work per message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import subprocess
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

from streampod.bench import measure, variants, workload
from streampod.bench.runner import (
    PARTITIONS,
    Record,
    Say,
    available_variants,
    close_job,
    config_fields,
    describe_machine,
    from_saved,
    open_job,
    saved_json,
)
from streampod.localkafka import create_topic

#: The per-message baseline is left out by default: under valgrind one POST per message takes hours.
VARIANTS: Final = ("in-process", "streampod", "quix")
#: Seconds each process may take to start under valgrind (the app imports FastAPI 30 to 100 times slower).
START_TIMEOUT_S: Final = 600.0
#: No new output for this long ends a count as failed.
STALL_S: Final = 300.0
#: Once every message is out, the outputs must stop growing for this long before the counters are read.
QUIET_S: Final = 3.0
IDLE_S: Final = 10.0


@dataclass(frozen=True)
class CountConfig:
    messages: int = 20_000
    warmup: int = 2_000
    sizes: tuple[int, ...] = (100, 1000)
    variants: tuple[str, ...] = VARIANTS
    install_quix: bool = True
    #: STREAMPOD_* settings for the streampod variant (``--streampod-env``): a tuning under test.
    streampod_env: tuple[tuple[str, str], ...] = ()


@dataclass
class CountResults:
    config: CountConfig
    machine: Record
    started: str = ""
    finished: str = ""
    skipped: dict[str, str] = field(default_factory=dict)
    counts: list[Record] = field(default_factory=list)

    def to_json(self) -> Record:
        return saved_json(self) | {"summary": summary(self.counts)}

    @classmethod
    def from_json(cls, data: Record) -> CountResults:
        return from_saved(cls, CountConfig(**config_fields(CountConfig, data["config"])), data)


def valgrind_missing() -> str | None:
    """Why counting cannot run here, or None."""
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not on PATH (Debian: apt-get install valgrind)"
    return None


def callgrind_total(path: Path) -> int:
    """The instructions a callgrind output file counted (its ``totals:`` line, or ``summary:``)."""
    found: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        key, _, rest = line.partition(":")
        if key in ("totals", "summary") and rest.split():
            found[key] = int(rest.split()[0])
    if not found:
        raise ValueError(f"{path}: no totals or summary line (not a callgrind output file?)")
    return found.get("totals", found.get("summary", 0))


class Callgrind:
    """Runs processes under callgrind and reads their counters: zeroed and dumped on demand."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._dumps: dict[int, int] = {}

    def wrap(self, name: str, argv: list[str]) -> list[str]:
        return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.dir}/{name}.%p", *argv]

    def zero(self, pid: int) -> None:
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True, timeout=120)

    def dump(self, name: str, pid: int) -> int:
        """Write the counters since the last zero (callgrind numbers the dumps from 1) and read their total."""
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True, timeout=120)
        self._dumps[pid] = self._dumps.get(pid, 0) + 1
        return callgrind_total(self.dir / f"{name}.{pid}.{self._dumps[pid]}")


class CountBench:
    def __init__(self, config: CountConfig, bootstrap: str, workdir: Path, say: Say = print) -> None:
        self.cfg = config
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.say = say
        _, skipped, quix_version = available_variants(
            config.variants, install_quix=config.install_quix, streampod_env={}, say=say
        )
        machine = describe_machine(bootstrap, measure.broker_process(bootstrap), quix_version)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            machine["valgrind"] = subprocess.run(
                ["valgrind", "--version"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        self.results = CountResults(config, machine, skipped=skipped)

    def run(self) -> CountResults:
        r = self.results
        r.started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        try:
            for size in self.cfg.sizes:
                for name in self.cfg.variants:
                    if name in r.skipped:
                        continue
                    rec = self._count(name, size)
                    r.counts.append(rec)
                    self.say(announce(rec))
        finally:
            r.finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return r

    def _count(self, name: str, size: int) -> Record:
        uid = uuid.uuid4().hex[:6]
        workdir = self.workdir / f"count-{name}-{size}"
        topic_in = f"bench-count-in-{size}-{uid}"
        create_topic(self.bootstrap, topic_in, PARTITIONS)
        job = open_job(self.bootstrap, topic_in, f"bench-count-out-{name}-{uid}", f"bench-count-{name}-{uid}", workdir)
        variant = variants.make(name, install_quix=False, streampod_env=dict(self.cfg.streampod_env))
        grind = Callgrind(workdir / "callgrind")
        variant.argv_wrapper = grind.wrap
        variant.start_timeout_s = START_TIMEOUT_S
        rec: Record = {"variant": name, "size": size, "messages": self.cfg.messages}
        try:
            self._measure(variant, job, grind, rec)
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"
            self.say(traceback.format_exc())
        finally:
            close_job(job, also=(topic_in,))
        return rec

    def _measure(self, variant: variants.Variant, job: variants.Job, grind: Callgrind, rec: Record) -> None:
        warm, n = self.cfg.warmup, self.cfg.messages
        watch = measure.Watermarks(self.bootstrap, job.topic_out, PARTITIONS)
        try:
            workload.preload(self.bootstrap, job.topic_in, warm, rec["size"])
            variant.start(job)
            _wait_for(watch, warm, variant)
            pids = {k: p.pid for k, p in variant.named_processes().items()}
            for pid in pids.values():
                grind.zero(pid)
            started = time.monotonic()
            workload.preload(self.bootstrap, job.topic_in, n, rec["size"], first_id=warm)
            _wait_for(watch, warm + n, variant)
            counted = {name: grind.dump(name, pid) for name, pid in pids.items()}
            window = time.monotonic() - started
            for pid in pids.values():
                grind.zero(pid)
            time.sleep(IDLE_S)
            idle = {name: grind.dump(name, pid) / IDLE_S for name, pid in pids.items()}
        except Exception:
            self.say(variant.logs())
            raise
        finally:
            watch.close()
            rec["exit_codes"] = variant.stop()
        rec["window_s"] = round(window, 1)
        rec["processes"] = {
            name: {
                "instructions": counted[name],
                "per_message": round(counted[name] / n),
                "idle_per_s": round(idle[name]),
                "busy_per_message": round(max(0.0, counted[name] - idle[name] * window) / n),
            }
            for name in counted
        }
        rec["per_message"] = sum(p["per_message"] for p in rec["processes"].values())
        rec["busy_per_message"] = sum(p["busy_per_message"] for p in rec["processes"].values())
        outputs = measure.read_outputs(self.bootstrap, job.topic_out, PARTITIONS)
        counts = measure.count_ids(outputs.ids, 0, warm + n)
        rec.update(asdict(counts))
        rec["dead_letters"] = measure.count_records(self.bootstrap, job.dead_letter_topic, 1)
        if counts.lost:
            rec["error"] = f"{counts.lost} message(s) lost"


def _wait_for(watch: measure.Watermarks, total: int, variant: variants.Variant) -> None:
    """Until at least ``total`` outputs are in and no more came for ``QUIET_S``."""
    last, changed = -1, time.monotonic()
    while True:
        now = time.monotonic()
        seen = watch.total()
        if seen != last:
            last, changed = seen, now
        elif seen >= total and now - changed >= QUIET_S:
            return
        elif now - changed > STALL_S:
            raise RuntimeError(f"no output for {STALL_S:.0f} s at {seen:,} of {total:,}")
        if not variant.alive():
            raise RuntimeError("a process exited")
        time.sleep(0.2)


def announce(rec: Record) -> str:
    head = f"bench: counted {rec['variant']} at ~{rec['size']} B"
    if rec.get("error"):
        return f"{head}: error: {rec['error']}"
    return (
        f"{head}: {rec['per_message']:,} instructions per message ({rec['busy_per_message']:,} busy) "
        f"over {rec['messages']:,} messages in {rec['window_s']} s; lost {rec['lost']}, duplicated {rec['duplicated']}"
    )


def summary(counts: Sequence[Record]) -> list[Record]:
    """Per size and variant: instructions per message and their ratio to the in-process limit's and Quix Streams'."""
    ok = [r for r in counts if not r.get("error")]

    def per_size(variant: str) -> dict[int, Record]:
        return {r["size"]: r for r in ok if r["variant"] == variant}

    def ratio(r: Record, against: Record | None, key: str) -> float | None:
        return round(r[key] / against[key], 2) if against and against[key] else None

    inprocess, quix = per_size("in-process"), per_size("quix")
    out = []
    for r in ok:
        row: Record = {k: r[k] for k in ("variant", "size", "per_message", "busy_per_message")}
        row["x_in_process"] = ratio(r, inprocess.get(r["size"]), "per_message")
        row["busy_x_in_process"] = ratio(r, inprocess.get(r["size"]), "busy_per_message")
        row["x_quix"] = ratio(r, quix.get(r["size"]), "per_message")
        out.append(row)
    return out


def markdown(results: CountResults) -> str:
    cfg = results.config
    m = results.machine
    lines = [
        "# CPU per message, counted: instructions per message under callgrind",
        "",
        f"Generated by `streampod bench --count` from {results.started} to {results.finished}. "
        'How to read it: docs/benchmark.md, "CPU per message, counted".',
        "",
        f"- {m.get('valgrind', 'valgrind')}; Python {m.get('python')}; librdkafka {m.get('librdkafka')}; "
        f"Quix Streams {m.get('quixstreams') or 'not measured'}; {m.get('kafka_broker')}",
        f"- per variant and size: {cfg.warmup:,} messages to warm up, then {cfg.messages:,} counted, "
        f"{PARTITIONS} partitions; every process of the variant under callgrind, all threads",
        "- busy: the count less each process's idle rate over the window (a lower bound)",
    ]
    lines += [f"- {name} skipped: {why}" for name, why in results.skipped.items()]
    if cfg.streampod_env:
        lines.append("- **streampod not at its defaults**: " + ", ".join(f"`{k}={v}`" for k, v in cfg.streampod_env))
    lines += [
        "",
        "| variant | size | instructions / msg | x in-process | x Quix Streams | busy / msg | x in-process "
        "| by process (busy) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]

    def ratio(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    by_key = {(r["variant"], r["size"]): r for r in results.counts}
    for row in summary(results.counts):
        procs = by_key[(row["variant"], row["size"])]["processes"]
        parts = ", ".join(f"{k} {p['per_message']:,} ({p['busy_per_message']:,})" for k, p in procs.items())
        lines.append(
            f"| {row['variant']} | {row['size']:,} B | {row['per_message']:,} | {ratio(row['x_in_process'])} | "
            f"{ratio(row['x_quix'])} | {row['busy_per_message']:,} | {ratio(row['busy_x_in_process'])} | {parts} |"
        )
    failed = [r for r in results.counts if r.get("error")]
    lines += [f"| {r['variant']} | {r['size']:,} B | error: {r['error']} |  |  |  |  |  |" for r in failed]
    return "\n".join(lines) + "\n"


def write(results: CountResults, out: Path) -> list[Path]:
    import orjson

    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "count.json", out / "count.md"
    js.write_bytes(orjson.dumps(results.to_json(), option=orjson.OPT_INDENT_2))
    md.write_text(markdown(results))
    return [js, md]
