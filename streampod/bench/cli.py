"""``streampod bench``: streampod against the per-message baseline, the in-process limit and Quix Streams.

  streampod bench --smoke      5,000 messages of ~100 B, one drain run of each installed variant
  streampod bench --full       the report: 3 runs, ~100 B and ~1 KB, drain and open loop, into docs/benchmark/
  streampod bench --profile py-spy   one drain of the streampod variant under a profiler
  streampod bench --crash      what a SIGKILL of each process costs (outage, duplicates), into crash.{json,md}
  streampod bench --count      instructions per message under callgrind (CPU per message without the
                               host's noise), into count.{json,md}
  streampod bench --render docs/benchmark/results.json   the report again from results.json (or crash.json, count.json)

Any option below overrides the preset. A local Kafka broker is started unless --bootstrap (or
STREAMPOD_KAFKA_BOOTSTRAP) names one. Exit 1 when a measurement failed or lost a message.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from streampod.bench import count, crash, profiling, variants
from streampod.bench.runner import Bench, Config, Results

T = TypeVar("T")

REPO: Final = Path(__file__).resolve().parent.parent.parent
SMOKE: Final = Config(
    messages=5_000, baseline_messages=1_000, sizes=(100,), runs=1, open_loop=False, install_quix=False
)
# The million messages per variant, size and run; the per-message baseline gets 10,000 (at a few
# hundred a second a million would take it an hour per drain; its rate is steady long before that).
FULL: Final = Config(messages=1_000_000, baseline_messages=10_000, sizes=(100, 1000), runs=3)
QUICK: Final = Config(messages=50_000, baseline_messages=2_000, sizes=(100, 1000), runs=1, open_seconds=10.0)
PROFILE: Final = Config(messages=200_000, sizes=(1000,), runs=1, variants=("streampod",), open_loop=False)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _fractions(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in _csv(text))


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("STREAMPOD_"):
        raise argparse.ArgumentTypeError(f"expected STREAMPOD_NAME=value, got {text!r}")
    return name, value


def _seconds_range(text: str) -> tuple[float, float]:
    """``10`` -> (10, 10); ``10-15`` -> (10, 15)."""
    low, sep, high = text.partition("-")
    try:
        bounds = (float(low), float(high) if sep else float(low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or a range of seconds (10-15), got {text!r}") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= low <= high, got {text!r}")
    return bounds


def parse(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(
        prog="streampod bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--smoke", action="store_true", help="the CI preset: small, fast, drain only")
    preset.add_argument("--full", action="store_true", help="the committed report (writes docs/benchmark/)")
    preset.add_argument("--profile", choices=profiling.KINDS, help="profile the streampod variant during a drain")
    preset.add_argument(
        "--crash", action="store_true", help="kill each process once mid-drain: outage and duplicates (crash.md)"
    )
    preset.add_argument(
        "--count",
        action="store_true",
        help="instructions per message of each variant under callgrind (count.md); needs valgrind",
    )
    preset.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: an earlier run's report again from its results.json, crash.json or count.json",
    )
    p.add_argument("--messages", type=int, help="messages preloaded per size (drain mode)")
    p.add_argument("--baseline-messages", type=int, help="messages for the per-message baseline (it is slow)")
    p.add_argument("--sizes", type=lambda s: tuple(int(x) for x in _csv(s)), help="value sizes in bytes: 100,1000")
    p.add_argument("--runs", type=int, help="repetitions (medians are reported)")
    p.add_argument("--variants", type=_csv, help=f"comma-separated, of {','.join(variants.ALL)}")
    p.add_argument("--no-open-loop", action="store_true", help="drain mode only")
    p.add_argument("--open-seconds", type=float, help="seconds of open-loop load per point")
    p.add_argument(
        "--loads",
        type=_fractions,
        help="open-loop points as fractions of the in-process drain rate: 0.25,0.5 ('' for none)",
    )
    p.add_argument("--own-loads", type=_fractions, help="open-loop points as fractions of each variant's own rate")
    p.add_argument(
        "--rates",
        type=_fractions,
        help="open-loop points at fixed rates in msgs/s, e.g. 1000,4000: latency away from saturation",
    )
    p.add_argument(
        "--streampod-env",
        type=_setting,
        action="append",
        metavar="STREAMPOD_NAME=VALUE",
        help="a setting for the streampod variant's three services (repeatable): to measure a tuning",
    )
    p.add_argument(
        "--scenarios",
        type=_csv,
        help=f"--crash: variant[:victim[+static][/term]], comma-separated (default {','.join(crash.SCENARIOS)})",
    )
    p.add_argument(
        "--kill-after-s",
        type=_seconds_range,
        metavar="S[-S]",
        help="--crash: seconds from the first output to the kill, or a range drawn from per scenario (10-15)",
    )
    p.add_argument("--seed", type=int, help="seed of the random order (default: random, and reported)")
    p.add_argument("--no-install", action="store_true", help="do not install Quix Streams (skip it if missing)")
    p.add_argument("--bootstrap", help="an existing Kafka broker, host:port")
    p.add_argument("--out", type=Path, help="where results.{json,md,png} go (--full: docs/benchmark)")
    p.add_argument("--workdir", type=Path, help="logs of every process (default: a temporary folder)")
    a = p.parse_args(argv)
    base = SMOKE if a.smoke else FULL if a.full else PROFILE if a.profile else QUICK
    changes: dict[str, Any] = {"profile": a.profile}
    overrides = (
        "messages",
        "baseline_messages",
        "sizes",
        "runs",
        "variants",
        "open_seconds",
        "seed",
        "loads",
        "own_loads",
        "rates",
    )
    for field in overrides:
        value = getattr(a, field)
        if value is not None:
            changes[field] = value
    if a.streampod_env:
        changes["streampod_env"] = tuple(a.streampod_env)
    if a.no_open_loop:
        changes["open_loop"] = False
    if a.no_install:
        changes["install_quix"] = False
    cfg = dataclasses.replace(base, **changes)
    unknown = set(cfg.variants) - set(variants.ALL)
    if unknown:
        p.error(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(variants.ALL)}")
    if a.out is None and a.full:
        a.out = REPO / "docs" / "benchmark"
    return cfg, a


def _on_broker(bootstrap: str | None, workdir: Path, measure: Callable[[str], T]) -> T:
    """``measure(bootstrap)`` on the given broker, or on a local one started for the run."""
    if bootstrap:
        return measure(bootstrap)
    from streampod.localkafka import LocalKafka

    print("bench: starting a local Kafka broker …", flush=True)
    with LocalKafka(log_dir=workdir / "kafka") as kafka:
        return measure(kafka.bootstrap_servers)


def run(cfg: Config, bootstrap: str | None, workdir: Path) -> Results:
    return _on_broker(bootstrap, workdir, lambda b: Bench(cfg, b, workdir).run())


def crash_config(cfg: Config, a: argparse.Namespace) -> crash.CrashConfig:
    """The crash run's settings from the options that apply to it (messages, size, runs, seed, install, env)."""
    changes: dict[str, Any] = {"runs": cfg.runs if a.runs is not None else 1, "install_quix": cfg.install_quix}
    if a.messages is not None:
        changes["messages"] = a.messages
    if a.sizes:
        changes["size"] = a.sizes[0]
    if a.seed is not None:
        changes["seed"] = a.seed
    if a.scenarios:
        for s in a.scenarios:
            crash.parse_scenario(s)
        changes["scenarios"] = a.scenarios
    if a.streampod_env:
        changes["streampod_env"] = tuple(a.streampod_env)
    if a.kill_after_s is not None:
        changes["kill_after_s"], changes["kill_after_max_s"] = a.kill_after_s
    return dataclasses.replace(crash.CrashConfig(), **changes)


def count_config(cfg: Config, a: argparse.Namespace) -> count.CountConfig:
    """The count's settings from the options that apply to it (messages, sizes, variants, install, env)."""
    changes: dict[str, Any] = {"install_quix": cfg.install_quix}
    if a.messages is not None:
        changes["messages"] = a.messages
    if a.sizes:
        changes["sizes"] = a.sizes
    if a.variants:
        changes["variants"] = a.variants
    if a.streampod_env:
        changes["streampod_env"] = tuple(a.streampod_env)
    return dataclasses.replace(count.CountConfig(), **changes)


def run_count(cfg: count.CountConfig, bootstrap: str | None, workdir: Path, out: Path) -> int:
    why = count.valgrind_missing()
    if why:
        print(f"streampod bench --count: {why}")
        return 2
    results = _on_broker(bootstrap, workdir, lambda b: count.CountBench(cfg, b, workdir).run())
    written = count.write(results, out)
    print(count.markdown(results))
    print(f"bench: wrote {', '.join(map(str, written))}")
    return 1 if any(r.get("error") or r.get("lost") for r in results.counts) else 0


def run_crash(cfg: crash.CrashConfig, bootstrap: str | None, workdir: Path, out: Path) -> int:
    results = _on_broker(bootstrap, workdir, lambda b: crash.CrashBench(cfg, b, workdir).run())
    written = crash.write(results, out)
    print(crash.markdown(results))
    print(f"bench: wrote {', '.join(map(str, written))}")
    return 1 if any(r.get("error") or r.get("lost") for r in results.scenarios) else 0


def render(path: Path, out: Path | None) -> int:
    """Rewrite an earlier run's report with this version's report code; the measurements stay as they are."""
    from streampod.bench import report

    data = orjson.loads(path.read_bytes())
    if "drain" not in data and "scenarios" in data:  # a crash.json
        written = crash.write(crash.CrashResults.from_json(data), out or path.parent)
    elif "counts" in data:  # a count.json
        written = count.write(count.CountResults.from_json(data), out or path.parent)
    else:
        results = Results.from_json(data)
        written = report.write(results, out or path.parent, png=results.config.runs > 0)
    print(f"bench: rendered {path}; wrote {', '.join(map(str, written))}")
    return 0


def _exit_on_sigterm() -> None:
    """SIGTERM ends a run as Ctrl-C does: the ``finally`` blocks on the way out stop every process the
    run started and delete its topics, where the default action would leave them running."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    cfg, a = parse(argv)
    _exit_on_sigterm()
    if a.render is not None:
        return render(a.render, a.out)
    crash_cfg = None
    if a.crash:
        try:
            crash_cfg = crash_config(cfg, a)
        except ValueError as exc:
            print(f"streampod bench: {exc}")
            return 2
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="streampod-bench-"))
    out = a.out or workdir / "results"
    print(f"bench: logs in {workdir}", flush=True)
    if crash_cfg is not None:
        return run_crash(crash_cfg, a.bootstrap, workdir, out)
    if a.count:
        return run_count(count_config(cfg, a), a.bootstrap, workdir, out)
    started = time.monotonic()
    results = run(cfg, a.bootstrap, workdir)
    from streampod.bench import report

    written = report.write(results, out, png=cfg.runs > 0)
    print(report.markdown(results))
    print(f"bench: finished in {(time.monotonic() - started) / 60:.1f} min; wrote {', '.join(map(str, written))}")
    bad = [r for r in results.drain + results.open_loop if r.get("error") or (r.get("lost") and r.get("load") is None)]
    return 1 if bad else 0
