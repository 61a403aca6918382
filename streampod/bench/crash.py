"""``streampod bench --crash``: what a crashed or replaced process costs each variant, side by side in one run.

At-least-once says nothing is lost when a process dies; it does not say what the crash costs. For
each scenario the variant drains a preloaded topic; at a time drawn between ``kill_after_s`` and
``kill_after_max_s`` after its first output, one of its processes gets SIGKILL and is started again
at once (as a container runtime restarts a crashed container, without its back-off), or, in the
``/term`` scenarios, gets SIGTERM and is replaced once it exited (as a rolling update replaces a
pod: under a new name), and the drain goes on to the end.
Measured from the output topic (LogAppendTime): the **outage** (the longest gap between two outputs
that ends after the kill), the **extra seconds** the drain took against a drain of the same variant
without a crash in the same run, and the **duplicates** (inputs that came out twice: the price of
at-least-once). Lost must be 0.

The streampod reader is crashed and replaced with the shipped default (dynamic group membership:
a crashed member's partitions wait for its session timeout, as the others' do, and a stopped one
leaves the group) and with static membership (``STREAMPOD_GROUP_INSTANCE_ID``, the chart's
``inputReader.staticMembership``: a restarted member takes its partitions back at once, and a
stopped one holds them until its session times out).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import random
import statistics
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final, NamedTuple

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
from streampod.localkafka import create_topic, delete_topic

#: A scenario: ``variant:victim[+static][/term]``, or ``variant`` alone for the drain without a crash.
STATIC: Final = "+static"
TERM: Final = "/term"
SCENARIOS: Final = (
    "streampod",
    "streampod:input-reader",
    f"streampod:input-reader{STATIC}",
    "streampod:app",
    "streampod:output-writer",
    f"streampod:input-reader{TERM}",
    f"streampod:input-reader{STATIC}{TERM}",
    "in-process",
    "in-process:inprocess",
    f"in-process:inprocess{TERM}",
    "quix",
    "quix:quix",
    f"quix:quix{TERM}",
)
#: No output for this long (a session timeout is 45 s) ends the scenario as failed.
STALL_S: Final = 120.0
#: Once every message is out at least once, the outputs must stop growing for this long.
QUIET_S: Final = 2.0


@dataclass(frozen=True)
class CrashConfig:
    messages: int = 1_000_000
    size: int = 1000
    runs: int = 1
    #: Seconds from the first output to the kill, drawn uniformly per scenario between the two (seeded):
    #: longer than the variants' commit intervals (streampod 1 s, the in-process limit's auto-commit
    #: and Quix Streams' checkpoints 5 s), so that the duplicates measure a running variant and not one
    #: that has committed nothing yet; and spread over one whole 5 s interval, so that the kills fall
    #: anywhere between two commits and the duplicates are a fair sample, not one phase of the cycle.
    kill_after_s: float = 10.0
    kill_after_max_s: float = 15.0
    scenarios: tuple[str, ...] = SCENARIOS
    seed: int | None = None
    install_quix: bool = True
    #: STREAMPOD_* settings for the streampod scenarios (``--streampod-env``): a tuning under test.
    streampod_env: tuple[tuple[str, str], ...] = ()


@dataclass
class CrashResults:
    config: CrashConfig
    machine: Record
    seed: int
    started: str = ""
    finished: str = ""
    skipped: dict[str, str] = field(default_factory=dict)
    scenarios: list[Record] = field(default_factory=list)

    def to_json(self) -> Record:
        return saved_json(self) | {"summary": summary(self.scenarios)}

    @classmethod
    def from_json(cls, data: Record) -> CrashResults:
        """The measurements of a ``crash.json``; its summary is derived again."""
        config = config_fields(CrashConfig, data["config"])
        # Before the kill time was drawn from a range, it was one time.
        config.setdefault("kill_after_max_s", config.get("kill_after_s", CrashConfig.kill_after_s))
        return from_saved(cls, CrashConfig(**config), data)


class Scenario(NamedTuple):
    variant: str
    #: The process stopped, or None for the drain without a crash.
    victim: str | None = None
    #: Static group membership for streampod's reader.
    static: bool = False
    #: SIGTERM and a replacement, instead of SIGKILL and a restart.
    graceful: bool = False


def parse_scenario(text: str) -> Scenario:
    """``variant[:victim[+static][/term]]`` -> its parts."""
    variant, _, victim = text.partition(":")
    graceful = victim.endswith(TERM)
    victim = victim.removesuffix(TERM)
    static = victim.endswith(STATIC)
    victim = victim.removesuffix(STATIC)
    if variant not in variants.ALL or variant == "per-message":
        raise ValueError(f"scenario {text!r}: variant must be one of streampod, in-process, quix")
    if (static or graceful) and not victim:
        raise ValueError(f"scenario {text!r}: {STATIC} and {TERM} need a victim (variant:victim)")
    return Scenario(variant, victim or None, static, graceful)


def scenario_dirname(scenario: str) -> str:
    """A folder for a scenario's logs: ``quix:quix/term`` -> ``quix-quix-term`` (a slash would nest it in another's)."""
    return scenario.replace(":", "-").replace("+", "-").replace("/", "-")


def outage_ms(appended_ms: Sequence[int], kill_ms: float) -> int | None:
    """The longest gap between two consecutive outputs (by append time) that ends after the kill."""
    ts = sorted(appended_ms)
    gaps = [b - a for a, b in itertools.pairwise(ts) if b >= kill_ms]
    return max(gaps) if gaps else None


def drain_seconds(appended_ms: Sequence[int]) -> float | None:
    """From the first output's append to the last's: the drain as the broker saw it."""
    if len(appended_ms) < 2:
        return None
    return (max(appended_ms) - min(appended_ms)) / 1000.0


class CrashBench:
    def __init__(self, config: CrashConfig, bootstrap: str, workdir: Path, say: Say = print) -> None:
        self.cfg = config
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.say = say
        seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
        self.rng = random.Random(seed)
        self.tag = uuid.uuid4().hex[:6]
        names = sorted({parse_scenario(s).variant for s in config.scenarios})
        _, skipped, quix_version = available_variants(
            names, install_quix=config.install_quix, streampod_env={}, say=say
        )
        machine = describe_machine(bootstrap, measure.broker_process(bootstrap), quix_version)
        self.results = CrashResults(config, machine, seed, skipped=skipped)

    def run(self) -> CrashResults:
        r = self.results
        r.started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        topic_in = f"bench-crash-in-{self.cfg.size}-{self.tag}"
        create_topic(self.bootstrap, topic_in, PARTITIONS)
        try:
            seconds = workload.preload(self.bootstrap, topic_in, self.cfg.messages, self.cfg.size)
            self.say(f"bench: preloaded {self.cfg.messages:,} messages of ~{self.cfg.size} B in {seconds:.1f} s")
            for run in range(1, self.cfg.runs + 1):
                todo = [s for s in self.cfg.scenarios if parse_scenario(s)[0] not in r.skipped]
                self.rng.shuffle(todo)
                for scenario in todo:
                    rec = self._scenario(run, scenario, topic_in)
                    r.scenarios.append(rec)
                    self.say(announce(rec))
        finally:
            with contextlib.suppress(Exception):
                delete_topic(self.bootstrap, topic_in)
            r.finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            r.machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return r

    def _scenario(self, run: int, scenario: str, topic_in: str) -> Record:
        name, victim, static, graceful = parse_scenario(scenario)
        uid = uuid.uuid4().hex[:6]
        group = f"bench-crash-{name}-{uid}"
        env = dict(self.cfg.streampod_env)
        if static:
            env["STREAMPOD_GROUP_INSTANCE_ID"] = f"{group}-reader"
        variant = variants.make(name, install_quix=False, streampod_env=env)
        workdir = self.workdir / f"run{run}-{scenario_dirname(scenario)}"
        job = open_job(self.bootstrap, topic_in, f"bench-crash-out-{name}-{uid}", group, workdir)
        rec: Record = {
            "run": run, "scenario": scenario, "variant": name, "victim": victim, "static": static, "graceful": graceful,
        }  # fmt: skip
        if victim is not None:
            rec["kill_after_s"] = round(self.rng.uniform(self.cfg.kill_after_s, self.cfg.kill_after_max_s), 2)
        try:
            self._drain(variant, victim, graceful, job, rec)
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"
            self.say(traceback.format_exc())
        finally:
            close_job(job)
        return rec

    def _drain(
        self, variant: variants.Variant, victim: str | None, graceful: bool, job: variants.Job, rec: Record
    ) -> None:
        n = self.cfg.messages
        pending_kill = victim is not None
        first_output: float | None = None
        outputs: measure.Outputs | None = None
        watch = measure.Watermarks(self.bootstrap, job.topic_out, PARTITIONS)
        try:
            variant.start(job)  # inside: what a failed or interrupted start started is stopped below
            last, changed = -1, time.monotonic()
            while True:
                total = watch.total()
                now = time.monotonic()
                if total != last:
                    last, changed = total, now
                elif now - changed > STALL_S:
                    raise RuntimeError(f"no output for {STALL_S:.0f} s at {total:,} of {n:,}")
                if first_output is None and total > 0:
                    first_output = now
                if pending_kill and total >= n:
                    raise RuntimeError("drained before the kill: more --messages, or a shorter --kill-after-s")
                if pending_kill and first_output is not None and now - first_output >= rec["kill_after_s"]:
                    if not isinstance(variant, variants.Crashable) or victim not in variant.victims:
                        raise ValueError(f"{variant.name} has no process {victim!r} to crash")
                    rec["outputs_at_kill"] = total
                    rec["kill_ms"] = time.time() * 1000.0
                    rec["restart_s"] = round(variant.restart(victim, graceful=graceful), 2)
                    pending_kill = False
                elif not pending_kill and total >= n and now - changed >= QUIET_S:
                    outputs = measure.read_outputs(self.bootstrap, job.topic_out, PARTITIONS)
                    if measure.count_ids(outputs.ids, 0, n).lost == 0:
                        break
                if not variant.alive():
                    raise RuntimeError("a process exited")
                time.sleep(0.1)
        except Exception:
            self.say(variant.logs())
            raise
        finally:
            watch.close()
            rec["exit_codes"] = variant.stop()
        # A million records take seconds to read: read again only if the stop let more out.
        if outputs is None or measure.count_records(self.bootstrap, job.topic_out, PARTITIONS) != len(outputs.ids):
            outputs = measure.read_outputs(self.bootstrap, job.topic_out, PARTITIONS)
        counts = measure.count_ids(outputs.ids, 0, n)
        rec.update(asdict(counts))
        rec["dead_letters"] = measure.count_records(self.bootstrap, job.dead_letter_topic, 1)
        rec["drain_s"] = drain_seconds(outputs.appended_ms)
        if "kill_ms" in rec:
            rec["outage_ms"] = outage_ms(outputs.appended_ms, rec["kill_ms"])
        if counts.lost:
            rec["error"] = f"{counts.lost} message(s) lost"


def announce(rec: Record) -> str:
    parts = [f"bench: run {rec['run']} crash {rec['scenario']}:"]
    if rec.get("drain_s") is not None:
        parts.append(f"drain {rec['drain_s']:.1f} s")
    if rec.get("outage_ms") is not None:
        parts.append(f"outage {rec['outage_ms']:,} ms")
    parts.append(f"lost {rec.get('lost')} dup {rec.get('duplicated')}")
    if rec.get("error"):
        parts.append(f"ERROR {rec['error']}")
    return " ".join(parts)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _range(values: Sequence[float | None]) -> list[float] | None:
    present = [v for v in values if v is not None]
    return [min(present), max(present)] if present else None


def summary(records: Sequence[Record]) -> list[Record]:
    """Per scenario, medians over the runs; the extra seconds against the same run's drain without a crash."""
    control = {(r["run"], r["variant"]): r.get("drain_s") for r in records if r.get("victim") is None}
    rows: dict[str, list[Record]] = {}
    for r in records:
        rows.setdefault(r["scenario"], []).append(r)
    out = []
    for scenario in [s for s in SCENARIOS if s in rows] + sorted(set(rows) - set(SCENARIOS)):
        recs = rows[scenario]
        extra = []
        for r in recs:
            base = control.get((r["run"], r["variant"]))
            if r.get("victim") and r.get("drain_s") is not None and base is not None:
                extra.append(r["drain_s"] - base)

        out.append(
            {
                "scenario": scenario,
                "runs": len(recs),
                "drain_s": _median([r.get("drain_s") for r in recs]),
                "extra_s": _median(extra),
                "outage_ms": _median([r.get("outage_ms") for r in recs]),
                "outage_ms_range": _range([r.get("outage_ms") for r in recs]),
                "restart_s": _median([r.get("restart_s") for r in recs]),
                "duplicated": _median([r.get("duplicated") for r in recs]),
                "duplicated_range": _range([r.get("duplicated") for r in recs]),
                "kill_after_s_range": _range([r.get("kill_after_s") for r in recs]),
                "lost": max((r.get("lost") or 0 for r in recs), default=0),
                "errors": [r["error"] for r in recs if r.get("error")],
            }
        )
    return out


_TITLES: Final = {
    "streampod": "streampod, no crash",
    "streampod:input-reader": "streampod, input reader killed",
    f"streampod:input-reader{STATIC}": "streampod, input reader killed (static membership)",
    "streampod:app": "streampod, app killed",
    "streampod:output-writer": "streampod, output writer killed",
    f"streampod:input-reader{TERM}": "streampod, input reader replaced (SIGTERM)",
    f"streampod:input-reader{STATIC}{TERM}": "streampod, input reader replaced (SIGTERM, static membership)",
    "in-process": "in-process limit, no crash",
    "in-process:inprocess": "in-process limit, its process killed",
    f"in-process:inprocess{TERM}": "in-process limit, its process replaced (SIGTERM)",
    "quix": "Quix Streams, no crash",
    "quix:quix": "Quix Streams, its process killed",
    f"quix:quix{TERM}": "Quix Streams, its process replaced (SIGTERM)",
}


_RANGES: Final = ", the range over the runs in brackets"


def markdown(results: CrashResults) -> str:
    cfg = results.config
    m = results.machine
    lines = [
        "# What a crash or a replacement costs: streampod against the in-process limit and Quix Streams",
        "",
        f"Generated by `streampod bench --crash` from {results.started} to {results.finished}; medians of "
        f"{cfg.runs} run(s) in random order (seed {results.seed}){_RANGES if cfg.runs > 1 else ''}. "
        "How to read it: docs/benchmark.md, "
        '"What a crash or a replacement costs".',
        "",
        f"- {m.get('nproc')} CPU(s), {m.get('cpu_model')}; Python {m.get('python')}; "
        f"librdkafka {m.get('librdkafka')}; Quix Streams {m.get('quixstreams') or 'not measured'}; "
        f"{m.get('kafka_broker')}",
        f"- {cfg.messages:,} messages of ~{cfg.size} B preloaded in {PARTITIONS} partitions; the victim "
        f"gets SIGKILL {kill_window(cfg)} after the first output and is started again at once "
        "(`/term`: SIGTERM, and a replacement under a new name once it exited)",
    ]
    lines += [f"- {name} skipped: {why}" for name, why in results.skipped.items()]
    if cfg.streampod_env:
        settings = ", ".join(f"`{k}={v}`" for k, v in cfg.streampod_env)
        lines.append(f"- **streampod not at its defaults**: {settings}")
    lines += [
        "",
        "| scenario | drain s | extra s | outage ms | restart s | duplicates | lost |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    def spread(span: list[float] | None, fmt: str) -> str:
        # Over several runs, the runs' range beside the median: one slow restart or late kill shows.
        if span is None or cfg.runs < 2 or span[0] == span[1]:
            return ""
        return f"{format(span[0], fmt)}-{format(span[1], fmt)}"

    for row in summary(results.scenarios):
        outage = num(row["outage_ms"], ",.0f")
        if runs := spread(row["outage_ms_range"], ",.0f"):
            outage += f" ({runs})"
        dup, dup_text = row["duplicated"], "-"
        if dup is not None:
            share = f"{100 * dup / cfg.messages:.2f} %"
            dup_range = spread(row["duplicated_range"], ",.0f")
            dup_text = f"{dup:,.0f} ({dup_range}; {share})" if dup_range else f"{dup:,.0f} ({share})"
        lines.append(
            f"| {_TITLES.get(row['scenario'], row['scenario'])} | {num(row['drain_s'], '.1f')} | "
            f"{num(row['extra_s'], '+.1f')} | {outage} | {num(row['restart_s'], '.2f')} | "
            f"{dup_text} | {row['lost']} |"
        )
        lines += [f"|  | error: {e} |  |  |  |  |  |" for e in row["errors"]]
    return "\n".join(lines) + "\n"


def kill_window(cfg: CrashConfig) -> str:
    if cfg.kill_after_max_s == cfg.kill_after_s:
        return f"{cfg.kill_after_s:g} s"
    return f"between {cfg.kill_after_s:g} and {cfg.kill_after_max_s:g} s (drawn per scenario)"


def write(results: CrashResults, out: Path) -> list[Path]:
    import orjson

    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "crash.json", out / "crash.md"
    js.write_bytes(orjson.dumps(results.to_json(), option=orjson.OPT_INDENT_2))
    md.write_text(markdown(results))
    return [js, md]
