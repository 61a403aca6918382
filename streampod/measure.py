"""``streampod measure --app app.py``: how long an app takes to start, and to answer a batch.

Runs the real app container's process (``streampod app``) in front of a real output writer (into a
temporary file), as in the pod:

- **start-up**: from starting the process until ``/healthz`` answers (imports, the app's ``setup()``:
  loading a model, starting Spark), ``--starts`` times; the app container's startupProbe must allow
  for the slowest, so a probe setting is suggested with twice that;
- **memory**: the resident size of the app's process and its children (a Spark JVM) once warm;
- **per batch**: POST /v1/messages with ``--batch-sizes`` records drawn from ``--samples`` (those the
  app answers ok), ``--rounds`` times each: the time until the app answered, outputs forwarded.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from streampod.ports import free_port
from streampod.stage import Component

_PROBE_PERIOD_S = 2
_MIN_FAILURE_THRESHOLD = 10


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="streampod measure", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--app", required=True, help="the app: a .py file or module[:attr] (STREAMPOD_APP_MODULE)")
    p.add_argument("--samples", type=Path, help="JSON-lines records {key, value} (default: samples.jsonl by the app)")
    p.add_argument("--starts", type=int, default=3, help="how many times to start the app (default 3)")
    p.add_argument("--batch-sizes", default="1,100,500", help="records per batch, comma-separated")
    p.add_argument("--rounds", type=int, default=20, help="batches of each size (default 20)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="more settings for the app")
    p.add_argument("--timeout", type=float, default=300.0, help="longest start-up to wait for, in seconds")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    samples_path = args.samples or Path(args.app).resolve().parent / "samples.jsonl"
    samples = [orjson.loads(line) for line in samples_path.read_bytes().splitlines() if line.strip()]
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    extra = dict(kv.split("=", 1) for kv in args.env)
    work = Path(tempfile.mkdtemp(prefix="streampod-measure-"))
    py = [sys.executable, "-m", "streampod"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPOD_")}
    writer_port, writer_ops = free_port(), free_port()
    writer = Component(
        "output-writer",
        [*py, "output-writer"],
        {
            **base,
            "STREAMPOD_OUTPUT_KIND": "file",
            "STREAMPOD_OUTPUT_FILE": str(work / "outputs.jsonl"),
            "STREAMPOD_WRITER_PORT": str(writer_port),
            "STREAMPOD_OPS_PORT": str(writer_ops),
            "STREAMPOD_OPS_HOST": "127.0.0.1",
        },
        writer_ops,
        work / "output-writer.log",
    )
    app_port, app_ops = free_port(), free_port()
    app_env = {
        **base,
        "STREAMPOD_APP_MODULE": args.app,
        "STREAMPOD_APP_PORT": str(app_port),
        "STREAMPOD_OPS_PORT": str(app_ops),
        "STREAMPOD_OPS_HOST": "127.0.0.1",
        "STREAMPOD_OUTPUT_URL": f"http://127.0.0.1:{writer_port}",
        **extra,
    }
    print(f"streampod measure: {args.app}; logs in {work}", flush=True)
    writer.start()
    app: Component | None = None
    try:
        writer.wait_until("/healthz", 60)
        starts = []
        for i in range(args.starts):
            app = Component("app", [*py, "app"], app_env, app_ops, work / f"app-{i}.log")
            t0 = time.monotonic()
            app.start()
            app.wait_until("/healthz", args.timeout)
            starts.append(time.monotonic() - t0)
            print(f"  start {i + 1}: {starts[-1]:.1f} s", flush=True)
            if i < args.starts - 1:
                _stop(app)
        assert app is not None
        url = f"http://127.0.0.1:{app_port}/v1/messages"
        good = _answered_ok(url, samples)
        if not good:
            print("streampod measure: the app answered no sample ok; nothing to time", file=sys.stderr)
            return 1
        timings = {n: _time_batches(url, good, n, args.rounds) for n in sizes}
        rss = _tree_rss_mib(app.proc.pid if app.proc else 0)
    finally:
        if app is not None:
            _stop(app)
        _stop(writer)
    print(report(starts, timings, rss))
    return 0


def _stop(c: Component) -> None:
    c.signal(15)
    if c.wait(30) is None:
        c.signal(9)
        c.wait(5)
    c.close()


def _body(records: Sequence[dict[str, Any]], tag: str) -> bytes:
    messages = [
        {
            "id": f"{tag}-{i}",
            "key": r.get("key"),
            "value": r.get("value"),
            "encoding": "json",
            "headers": {},
            "source": {"system": "measure", "topic": "measure", "partition": 0, "offset": i},
        }
        for i, r in enumerate(records)
    ]
    return orjson.dumps({"messages": messages})


def _post(url: str, body: bytes) -> dict[str, Any]:
    # The URL is the loopback one built above, never a user's: no other scheme can reach here.
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")  # noqa: S310
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310
        reply: dict[str, Any] = orjson.loads(resp.read())
        return reply


def _answered_ok(url: str, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = _post(url, _body(samples, "probe"))["results"]
    return [s for s, r in zip(samples, results, strict=True) if r["status"] == "ok"]


def _time_batches(url: str, good: list[dict[str, Any]], size: int, rounds: int) -> list[float]:
    batch = [good[i % len(good)] for i in range(size)]
    times = []
    for n in range(rounds):
        body = _body(batch, f"b{size}-{n}")
        t0 = time.perf_counter()
        results = _post(url, body)["results"]
        times.append(time.perf_counter() - t0)
        bad = [r for r in results if r["status"] != "ok"]
        if bad:
            raise RuntimeError(f"batch of {size}: {len(bad)} not ok, e.g. {bad[0]}")
    return times


def _tree_rss_mib(pid: int) -> float | None:
    """Resident memory of ``pid`` and all its descendants (Linux /proc), in MiB."""
    proc = Path("/proc")
    if not pid or not proc.is_dir():
        return None
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            status = (d / "status").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss[int(d.name)] = int(line.split()[1])
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total / 1024


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(starts: list[float], timings: dict[int, list[float]], rss_mib: float | None) -> str:
    """The measurements as Markdown, with the startupProbe they suggest."""
    slowest = max(starts)
    threshold = max(_MIN_FAILURE_THRESHOLD, math.ceil(2 * slowest / _PROBE_PERIOD_S))
    lines = [
        "",
        f"start-up (process start to /healthz 200), {len(starts)} run(s): "
        + ", ".join(f"{s:.1f} s" for s in starts)
        + f"; slowest {slowest:.1f} s",
    ]
    if rss_mib is not None:
        lines.append(f"resident memory once warm (app process and its children): {rss_mib:.0f} MiB")
    lines += [
        "",
        "| records per batch | median ms | p95 ms | max ms | median µs per record |",
        "| --- | --- | --- | --- | --- |",
    ]
    for size, times in timings.items():
        ordered = sorted(times)
        p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
        median = statistics.median(ordered)
        lines.append(f"| {size} | {_ms(median)} | {_ms(p95)} | {_ms(ordered[-1])} | {median / size * 1e6:.0f} |")
    lines += [
        "",
        "suggested app startupProbe (values.yaml, twice the slowest start):",
        f"  startupProbe: {{periodSeconds: {_PROBE_PERIOD_S}, failureThreshold: {threshold}, timeoutSeconds: 2}}",
    ]
    return "\n".join(lines)
