"""Runs the benchmark: drain and open-loop measurements of every variant, in random order, per run."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import random
import statistics
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final, TypeVar

import confluent_kafka
import psutil

from streampod.bench import hostprobe, measure, profiling, variants, workload
from streampod.localkafka import KAFKA_VERSION, create_topic, delete_topic

PARTITIONS: Final = 4
STALL_S: Final = 60.0
FIXED: Final = "fixed"


def rate_label(rate: float) -> str:
    return f"{rate:,.0f}/s"


def points(cfg: Config) -> list[tuple[str, str | None, float]]:
    """Open-loop points: (label, whose drain throughput the rate is a fraction of, the fraction).

    A fixed rate is a "fraction" of 1 msg/s (basis FIXED).
    """
    out: list[tuple[str, str | None, float]] = [(f"{f:.0%}", "in-process", f) for f in cfg.loads]
    out += [(f"{f:.0%} of own", None, f) for f in cfg.own_loads]
    out += [(rate_label(r), FIXED, r) for r in cfg.rates]
    return out


OUTPUT_TOPIC_CONFIG: Final = {"message.timestamp.type": "LogAppendTime"}


def open_job(bootstrap: str, topic_in: str, topic_out: str, group: str, workdir: Path) -> variants.Job:
    """One measurement's job, its output topic (LogAppendTime) and dead-letter topic created."""
    job = variants.Job(bootstrap, topic_in, topic_out, group, workdir, dead_letter_topic=f"{group}.dlq")
    create_topic(bootstrap, job.topic_out, PARTITIONS, OUTPUT_TOPIC_CONFIG)
    create_topic(bootstrap, job.dead_letter_topic, 1)
    return job


def close_job(job: variants.Job, also: tuple[str, ...] = ()) -> None:
    """Delete what ``open_job`` created (and ``also``), whatever the measurement left behind."""
    for topic in (job.topic_out, job.dead_letter_topic, *also):
        with contextlib.suppress(Exception):
            delete_topic(job.bootstrap, topic)


@dataclass(frozen=True)
class Config:
    messages: int = 100_000
    baseline_messages: int = 5_000
    sizes: tuple[int, ...] = (100, 1000)
    runs: int = 3
    variants: tuple[str, ...] = variants.ALL
    open_loop: bool = True
    loads: tuple[float, ...] = (0.25, 0.5, 0.75)
    # Also at a fraction of each variant's own drain throughput: latency where it can keep up.
    own_loads: tuple[float, ...] = (0.5,)
    # And at fixed rates (msgs/s): the latency floor away from saturation, the same for every variant.
    rates: tuple[float, ...] = ()
    open_seconds: float = 20.0
    warmup_seconds: float = 5.0
    seed: int | None = None
    install_quix: bool = True
    profile: str | None = None
    #: STREAMPOD_* settings for the streampod variant's three services (default: none, the shipped defaults).
    streampod_env: tuple[tuple[str, str], ...] = ()


Record = dict[str, Any]
Say = Callable[[str], None]
R = TypeVar("R")


@dataclass
class Results:
    config: Config
    machine: Record
    seed: int
    started: str = ""
    finished: str = ""
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    drain: list[Record] = field(default_factory=list)
    open_loop: list[Record] = field(default_factory=list)
    profiles: list[Record] = field(default_factory=list)

    def to_json(self) -> Record:
        return saved_json(self)

    @classmethod
    def from_json(cls, data: Record) -> Results:
        """The measurements of a ``results.json``; what the report derives from them (targets, medians) is left."""
        return from_saved(cls, Config(**config_fields(Config, data["config"])), data)


def saved_json(results: Any) -> Record:
    """A run's results (a dataclass with a ``config``) as JSON-ready fields: the config's tuples as lists."""
    out: Record = asdict(results)
    out["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(results.config).items()}
    return out


def from_saved(kind: type[R], config: Any, data: Record) -> R:
    """``kind`` (a results dataclass) again from its saved JSON, ``config`` rebuilt by the caller."""
    # Typed as any class: every results dataclass takes its config first and its other fields by name.
    own = {f.name for f in fields(kind)} - {"config"}  # type: ignore[arg-type]
    return kind(config, **{k: v for k, v in data.items() if k in own})  # type: ignore[call-arg]


def config_fields(kind: type[Any], saved: Record) -> Record:
    """The fields of a saved config that ``kind`` (a dataclass) still has, JSON's lists as the tuples it holds."""
    known = {f.name for f in fields(kind)}
    config = {k: v for k, v in saved.items() if k in known}
    for k, v in config.items():
        if isinstance(v, list):
            config[k] = tuple(tuple(x) if isinstance(x, list) else x for x in v)
    return config


def describe_machine(bootstrap: str, broker: psutil.Process | None, quix_version: str | None) -> Record:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "confluent_kafka": importlib.metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "quixstreams": quix_version,
        "kafka_broker": f"Apache Kafka {KAFKA_VERSION} (local, single node)" if broker else f"external at {bootstrap}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def available_variants(
    names: Iterable[str], *, install_quix: bool, streampod_env: Mapping[str, str], say: Say
) -> tuple[dict[str, variants.Variant], dict[str, str], str | None]:
    """The variants that can run here, why each other one cannot (said too), and Quix Streams' version."""
    ready: dict[str, variants.Variant] = {}
    skipped: dict[str, str] = {}
    quix_version = None
    for name in names:
        v = variants.make(name, install_quix=install_quix, streampod_env=streampod_env)
        why = v.unavailable()
        if why:
            skipped[name] = why
            say(f"bench: {name} skipped: {why}")
        else:
            ready[name] = v
        if isinstance(v, variants.Quix):
            quix_version = v.version
    return ready, skipped, quix_version


@dataclass(frozen=True)
class _Input:
    topic: str
    messages: int
    size: int


class Bench:
    def __init__(self, config: Config, bootstrap: str, workdir: Path, say: Say = print) -> None:
        self.cfg = config
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.say = say
        self.broker = measure.broker_process(bootstrap)
        self.tag = uuid.uuid4().hex[:6]
        seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
        self.rng = random.Random(seed)
        self.variants, skipped, quix_version = available_variants(
            config.variants, install_quix=config.install_quix, streampod_env=dict(config.streampod_env), say=say
        )
        self.results = Results(config, describe_machine(bootstrap, self.broker, quix_version), seed, skipped=skipped)
        self._inputs: dict[tuple[int, bool], _Input] = {}

    # ----------------------------------------------------------------------------------------------

    def run(self) -> Results:
        r = self.results
        r.started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        t0 = time.monotonic()
        try:
            self._preload()
            for run in range(1, self.cfg.runs + 1):
                self._run_once(run)
        finally:
            self._cleanup_inputs()
            r.seconds = round(time.monotonic() - t0, 1)
            r.finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            r.machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return r

    def _input(self, size: int, variant: str) -> _Input:
        return self._inputs[(size, variant == "per-message" and self._baseline_separate())]

    def _baseline_separate(self) -> bool:
        return "per-message" in self.variants and self.cfg.baseline_messages < self.cfg.messages

    def _preload(self) -> None:
        wanted = [(False, self.cfg.messages)]
        if self._baseline_separate():
            wanted.append((True, self.cfg.baseline_messages))
        for size in self.cfg.sizes:
            for small, n in wanted:
                topic = f"bench-in-{size}{'-small' if small else ''}-{self.tag}"
                create_topic(self.bootstrap, topic, PARTITIONS)
                seconds = workload.preload(self.bootstrap, topic, n, size)
                self.say(f"bench: preloaded {n:,} messages of ~{size} B into {topic} in {seconds:.1f} s")
                self._inputs[(size, small)] = _Input(topic, n, size)

    def _cleanup_inputs(self) -> None:
        for i in self._inputs.values():
            with contextlib.suppress(Exception):
                delete_topic(self.bootstrap, i.topic)

    def _run_once(self, run: int) -> None:
        drains = [(v, s) for v in self.variants for s in self.cfg.sizes]
        self.rng.shuffle(drains)
        for name, size in drains:
            rec = self._measure(run, name, size, None, 0.0)
            self.results.drain.append(rec)
            self._announce(rec)
        if not self.cfg.open_loop:
            return
        jobs = [(v, s, p) for v in self.variants for s in self.cfg.sizes for p in points(self.cfg)]
        self.rng.shuffle(jobs)
        for name, size, (label, basis, fraction) in jobs:
            limit = 1.0 if basis == FIXED else self._drain_rate(run, basis or name, size)
            own = self._drain_rate(run, name, size)
            if limit is None:
                why = f"no {basis or 'own'} drain throughput in this run"
                self.results.open_loop.append(_skip(run, name, size, label, why))
                continue
            rate = fraction * limit
            if own is not None and rate > own:
                # Its drain throughput in this run is far below the offered rate: it would only queue.
                why = f"offered {rate:,.0f}/s is above its drain throughput {own:,.0f}/s"
                self.results.open_loop.append(_skip(run, name, size, label, why, saturated=True, offered=rate))
                self.say(f"bench: run {run} {name} {size} B {label}: saturated ({why})")
                continue
            rec = self._measure(run, name, size, label, rate)
            self.results.open_loop.append(rec)
            self._announce(rec)

    def _drain_rate(self, run: int, name: str, size: int) -> float | None:
        for rec in self.results.drain:
            if rec["run"] == run and rec["variant"] == name and rec["size"] == size and not rec.get("error"):
                rate = rec.get("msgs_per_s")
                return float(rate) if rate else None
        return None

    def _announce(self, rec: Record) -> None:
        mode = "drain" if rec.get("load") is None else f"{rec['load']} load"
        parts = [f"bench: run {rec['run']} {rec['variant']} {rec['size']} B {mode}:"]
        if rec.get("msgs_per_s"):
            parts.append(f"{rec['msgs_per_s']:,.0f} msg/s")
        if rec.get("p99_ms") is not None:
            parts.append(f"p50 {rec['p50_ms']:.0f} ms p99 {rec['p99_ms']:.0f} ms")
        if rec.get("cpu_s_per_million") is not None:
            parts.append(f"{rec['cpu_s_per_million']:.0f} CPU s/M")
        parts.append(f"peak RSS {rec.get('peak_rss_mb', 0):.0f} MB lost {rec.get('lost')} dup {rec.get('duplicated')}")
        if rec.get("error"):
            parts.append(f"ERROR {rec['error']}")
        self.say(" ".join(parts))

    # ----------------------------------------------------------------------------------------------

    def _measure(self, run: int, name: str, size: int, load: str | None, rate: float) -> Record:
        variant = self.variants[name]
        uid = uuid.uuid4().hex[:6]
        mode = "drain" if load is None else "open" + "".join(c for c in load if c.isalnum())
        self.results.order.append(f"run{run}:{name}:{size}:{mode}")
        group = f"bench-{name}-{size}-{mode}-{uid}"
        if load is None:
            source = self._input(size, name)
            topic_in, n = source.topic, source.messages
        else:
            topic_in, n = f"bench-open-{size}-{uid}", int(rate * self.cfg.open_seconds)
            create_topic(self.bootstrap, topic_in, PARTITIONS)
        job = open_job(
            self.bootstrap, topic_in, f"bench-out-{name}-{size}-{mode}-{uid}", group,
            self.workdir / f"run{run}-{name}-{size}-{mode}",
        )  # fmt: skip
        rec: Record = {"run": run, "variant": name, "size": size, "load": load, "messages": n}
        if load is not None:
            rec["target_msgs_per_s"] = rec["offered_msgs_per_s"] = round(rate, 1)
        try:
            if load is None:
                self._drain(variant, job, n, rec)
            else:
                self._open_loop(variant, job, rate, rec)
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"
            self.say(traceback.format_exc())
        finally:
            close_job(job, also=(topic_in,) if load is not None else ())
        return rec

    @contextlib.contextmanager
    def _running(self, variant: variants.Variant, job: variants.Job, rec: Record) -> Iterator[measure.Sampler]:
        """The variant started and sampled; stopped afterwards, its exit codes and errors recorded."""
        profiler = None
        if self.cfg.profile and isinstance(variant, variants.Streampod):
            profiler = profiling.Profiler(self.cfg.profile, job.workdir)
            variant.argv_wrapper = profiler.wrap_argv
        # Before start and after stop, so the probe never competes with the variant for a CPU.
        rec["host_probe"] = [hostprobe.probe()]
        started = time.monotonic()
        try:
            variant.start(job)
        except BaseException:
            variant.stop()  # what a failed or interrupted start had started
            raise
        rec["start_s"] = round(time.monotonic() - started, 2)
        if profiler is not None and isinstance(variant, variants.Streampod):
            profiler.attach(variant.named_processes())
        sampler = measure.Sampler(variant.named_processes, self.broker).start()
        failed = False
        try:
            yield sampler
        except BaseException:
            failed = True
            raise
        finally:
            sampler.sample_now()
            samples = sampler.stop()
            if failed or rec.get("error"):
                self.say(variant.logs())
            if isinstance(variant, variants.Streampod):
                rec["hops"] = variant.hop_means()
            codes = variant.stop()
            rec["exit_codes"] = codes
            rec["host_probe"].append(hostprobe.probe())
            rec["host_probe_us"] = hostprobe.summary(rec["host_probe"])
            rec["peak_rss_mb"] = round(samples.peak_rss() / 2**20, 1)
            rec["peak_rss_mb_by_process"] = {k: round(v / 2**20, 1) for k, v in samples.peak_rss_by_process.items()}
            if profiler is not None:
                rec["profile"] = profiler.finish()
                self.results.profiles.append({"size": rec["size"], **rec["profile"]})
            rec["_samples"] = samples

    def _drain(self, variant: variants.Variant, job: variants.Job, n: int, rec: Record) -> None:
        source = self._input(rec["size"], variant.name)
        first_id = 0
        watch = measure.Watermarks(self.bootstrap, job.topic_out, PARTITIONS)
        t0 = time.monotonic()
        try:
            with self._running(variant, job, rec):
                last, changed = -1, time.monotonic()
                max_s = 120.0 + n / 200.0
                while True:
                    total = watch.total()
                    now = time.monotonic()
                    if total >= n:
                        break
                    if not variant.alive():
                        rec["error"] = "a process exited"
                        break
                    if total != last:
                        last, changed = total, now
                    elif now - changed > STALL_S:
                        rec["error"] = f"no progress for {STALL_S:.0f} s at {total:,} of {n:,}"
                        break
                    if now - t0 > max_s:
                        rec["error"] = f"not done after {max_s:.0f} s ({total:,} of {n:,})"
                        break
                    time.sleep(0.25)
        finally:
            watch.close()
        rec["seconds"] = round(time.monotonic() - t0, 1)
        outputs = measure.read_outputs(self.bootstrap, job.topic_out, PARTITIONS)
        counts = measure.count_ids(outputs.ids, first_id, source.messages)
        rec.update(asdict(counts))
        rec["dead_letters"] = measure.count_records(self.bootstrap, job.dead_letter_topic, 1)
        rate, t_lo, t_hi = measure.steady_rate(outputs.appended_ms)
        rec["msgs_per_s"] = None if rate is None else round(rate, 1)
        _cpu(rec, rate, t_lo, t_hi)
        if counts.lost and not rec.get("error"):
            rec["error"] = f"{counts.lost} message(s) lost"

    def _open_loop(self, variant: variants.Variant, job: variants.Job, rate: float, rec: Record) -> None:
        cfg = self.cfg
        with self._running(variant, job, rec):
            rec["group_stable"] = measure.wait_group_stable(self.bootstrap, job.group, PARTITIONS, 60.0)
            produce_start = time.time()
            paced = workload.produce_at_rate(
                self.bootstrap, job.topic_in, rate=rate, seconds=cfg.open_seconds, size=rec["size"],
                stop=lambda: not variant.alive(),
            )  # fmt: skip
            rec.update(
                messages=paced.produced,
                offered_msgs_per_s=round(paced.produced / paced.seconds, 1) if paced.seconds else None,
                producer_max_behind_ms=round(paced.max_behind_ms, 1),
                producer_cores=round(paced.cpu_s / paced.seconds, 2) if paced.seconds else None,
            )
            grace = max(10.0, cfg.open_seconds / 2)
            deadline = time.monotonic() + grace
            watch = measure.Watermarks(self.bootstrap, job.topic_out, PARTITIONS)
            try:
                while watch.total() < paced.produced and time.monotonic() < deadline and variant.alive():
                    time.sleep(0.25)
            finally:
                watch.close()
        outputs = measure.read_outputs(self.bootstrap, job.topic_out, PARTITIONS)
        counts = measure.count_ids(outputs.ids, 0, paced.produced)
        rec.update(asdict(counts))
        rec["dead_letters"] = measure.count_records(self.bootstrap, job.dead_letter_topic, 1)
        rec["log_append_time"] = outputs.log_append_time
        # Latency of the messages due after the warm-up, each counted once (its first output).
        cutoff_ms = produce_start * 1000.0 + cfg.warmup_seconds * 1000.0
        first: dict[int, int] = {}
        for i, ts_in, appended in zip(outputs.ids, outputs.ts_in_ms, outputs.appended_ms, strict=True):
            if ts_in >= cutoff_ms and i not in first:
                first[i] = appended - ts_in
        lat = sorted(first.values())
        rec["latency_samples"] = len(lat)
        for q, key in ((50, "p50_ms"), (99, "p99_ms"), (99.9, "p999_ms"), (100, "max_ms")):
            rec[key] = measure.percentile(lat, q)
        rec["percentiles_ms"] = measure.spectrum(lat)
        # For ``is_saturated``: did a queue grow during the window?
        by_time = [first[i] for i in sorted(first)]  # ids rise with the time they were produced
        quarter = len(by_time) // 4
        early = measure.percentile(sorted(by_time[:quarter]), 50) if quarter else None
        late = measure.percentile(sorted(by_time[-quarter:]), 50) if quarter else None
        rec["p50_first_quarter_ms"], rec["p50_last_quarter_ms"] = early, late
        end_ms = produce_start * 1000.0 + cfg.open_seconds * 1000.0
        in_window = [a for a, t in zip(outputs.appended_ms, outputs.ts_in_ms, strict=True) if t >= cutoff_ms]
        rate_out, t_lo, t_hi = measure.steady_rate(in_window, 0.0, 1.0)
        rec["msgs_per_s"] = None if rate_out is None else round(rate_out, 1)
        rec["window_s"] = round((end_ms - cutoff_ms) / 1000.0, 1)
        rec["saturated"] = is_saturated(rec)
        _cpu(rec, rate_out, t_lo, t_hi)


#: An open-loop point whose output came out at less than this share of the rate its input went in
#: was falling behind; the points that kept up measured 0.99-1.03 of it.
KEPT_UP_SHARE: Final = 0.95


def is_saturated(rec: Record) -> bool:
    """Whether an open-loop point measured a queue rather than the pipeline.

    Saturated: a message was lost (not out by the end of the grace period), the output came out
    slower than the input went in, or a queue grew during the window (the median latency of the
    last quarter of the messages above twice the first quarter's plus 50 ms). Judged again from
    the stored fields when a report is rendered, so that an older results.json gets the same rule.
    """
    if rec.get("saturated") or rec.get("lost"):
        return True
    out, offered = rec.get("msgs_per_s"), rec.get("offered_msgs_per_s")
    if out is not None and offered and out < KEPT_UP_SHARE * offered:
        return True
    early, late = rec.get("p50_first_quarter_ms"), rec.get("p50_last_quarter_ms")
    return early is not None and late is not None and late > 2 * early + 50


def _cpu(rec: Record, rate: float | None, t_lo: float, t_hi: float) -> None:
    samples: measure.Samples = rec.pop("_samples")
    rec["cpu_s_per_million"] = rec["broker_cpu_s_per_million"] = None
    if rate is None or t_hi <= t_lo:
        return
    messages = rate * (t_hi - t_lo)
    cpu = samples.cpu_between(t_lo, t_hi)
    broker = samples.cpu_between(t_lo, t_hi, broker=True)
    if cpu is not None:
        rec["cpu_s_per_million"] = round(cpu / messages * 1e6, 1)
        rec["cpu_cores"] = round(cpu / (t_hi - t_lo), 2)
    steady = samples.median_rss_between(t_lo, t_hi)
    if steady is not None:
        rec["steady_rss_mb"] = round(steady / 2**20, 1)
    by_process = samples.cpu_between_by_process(t_lo, t_hi)
    if len(by_process) > 1:
        rec["cpu_s_per_million_by_process"] = {k: round(v / messages * 1e6, 1) for k, v in by_process.items()}
    if broker is not None:
        rec["broker_cpu_s_per_million"] = round(broker / messages * 1e6, 1)
        rec["broker_cores"] = round(broker / (t_hi - t_lo), 2)


def _skip(
    run: int, name: str, size: int, load: str, why: str, *, saturated: bool = False, offered: float | None = None
) -> Record:
    return {
        "run": run, "variant": name, "size": size, "load": load, "skipped": why, "saturated": saturated,
        "offered_msgs_per_s": None if offered is None else round(offered, 1),
        "target_msgs_per_s": None if offered is None else round(offered, 1),
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Medians
# --------------------------------------------------------------------------------------------------

_METRICS: Final = (
    "msgs_per_s", "cpu_s_per_million", "broker_cpu_s_per_million", "cpu_cores", "peak_rss_mb", "steady_rss_mb",
    "p50_ms", "p99_ms", "p999_ms", "max_ms", "offered_msgs_per_s", "target_msgs_per_s", "producer_max_behind_ms",
    "producer_cores", "broker_cores", "host_probe_us",
)  # fmt: skip


def medians(records: list[Record]) -> dict[tuple[str, int, str | None], Record]:
    """Per (variant, size, load): the median of each metric over the runs, and the worst loss."""
    groups: dict[tuple[str, int, str | None], list[Record]] = {}
    for rec in records:
        groups.setdefault((rec["variant"], rec["size"], rec.get("load")), []).append(rec)
    out: dict[tuple[str, int, str | None], Record] = {}
    for key, recs in groups.items():
        measured = [r for r in recs if "skipped" not in r]
        row: Record = {"runs": len(measured)}
        for m in _METRICS:
            # The offered rate is known for a point skipped as saturated too.
            values = [
                r[m]
                for r in (recs if m in ("offered_msgs_per_s", "target_msgs_per_s") else measured)
                if r.get(m) is not None
            ]
            row[m] = statistics.median(values) if values else None
            if m == "msgs_per_s" and values:
                row["msgs_per_s_min"], row["msgs_per_s_max"] = min(values), max(values)
        row["lost"] = max((r.get("lost", 0) for r in measured), default=None)
        row["duplicated"] = max((r.get("duplicated", 0) for r in measured), default=None)
        row["saturated"] = any(r.get("load") is not None and is_saturated(r) for r in recs)
        row["errors"] = [r["error"] for r in measured if r.get("error")]
        row["skipped"] = sorted({r["skipped"] for r in recs if "skipped" in r})
        out[key] = row
    return out
