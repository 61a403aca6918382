"""The benchmark's smoke configuration: every installed variant drains 5,000 messages and loses none.

Never a timed assertion: the numbers of a CI machine say nothing; that the harness runs end to end,
on the real broker, and that no variant loses a message, does.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil
import pytest

from streampod.bench import count, measure, workload
from streampod.localkafka import LocalKafka, create_topic


@pytest.mark.kafka
def test_bench_smoke_finishes_and_loses_nothing(kafka_broker: LocalKafka, tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = [sys.executable, "-m", "streampod", "bench", "--smoke", "--bootstrap", kafka_broker.bootstrap_servers,
            "--out", str(out), "--workdir", str(tmp_path / "work")]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    data = orjson.loads((out / "results.json").read_bytes())
    measured = {r["variant"] for r in data["drain"]}
    # Quix Streams lives in its own environment, installed by a full run; the smoke run uses it if present.
    for name, why in data["skipped"].items():
        print(f"bench smoke: {name} not measured: {why}")
    assert {"streampod", "per-message", "in-process"} <= measured
    assert measured | set(data["skipped"]) == {"streampod", "per-message", "in-process", "quix"}
    for rec in data["drain"]:
        assert rec.get("error") is None, rec
        assert rec["lost"] == 0, rec
        assert rec["distinct"] == rec["messages"], rec
        assert rec["dead_letters"] == 0, rec
    assert (out / "results.md").read_text().count("| streampod | 100 B |") == 1
    assert (out / "results.png").stat().st_size > 0


@pytest.mark.kafka
def test_open_loop_producer_sends_every_message_due_once_and_reports_its_cpu(kafka_broker: LocalKafka) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    create_topic(bootstrap, "bench-open-loop", 4)
    before = time.time_ns() // 1_000_000
    paced = workload.produce_at_rate(bootstrap, "bench-open-loop", rate=3000, seconds=1.0, size=100, first_id=7)
    assert paced.produced == 3000
    # Paced by the clock, not as fast as it can: a second's worth of messages takes about a second.
    assert paced.seconds >= 0.9
    assert paced.cpu_s > 0
    out = measure.read_outputs(bootstrap, "bench-open-loop", 4)
    counts = measure.count_ids(out.ids, 7, 3000)
    assert (counts.lost, counts.duplicated, counts.distinct) == (0, 0, 3000)
    # Every message carries the time it was produced, which is what its latency is measured from.
    assert all(before <= ts <= time.time_ns() // 1_000_000 for ts in out.ts_in_ms)


@pytest.mark.kafka
def test_bench_crash_kills_each_streampod_process_mid_drain_and_loses_nothing(
    kafka_broker: LocalKafka, tmp_path: Path
) -> None:
    # The in-process limit and Quix Streams wait out a session timeout (45 s) after their crash, as a
    # static member replaced does: too long for CI. These recover in about a second each.
    scenarios = ",".join(
        ("streampod", "streampod:input-reader+static", "streampod:app", "streampod:output-writer",
         "streampod:input-reader/term")
    )  # fmt: skip
    out = tmp_path / "results"
    argv = [sys.executable, "-m", "streampod", "bench", "--crash", "--messages", "40000", "--sizes", "1000",
            "--kill-after-s", "0.2-0.4",
            "--scenarios", scenarios, "--bootstrap", kafka_broker.bootstrap_servers,
            "--out", str(out), "--workdir", str(tmp_path / "work")]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    data = orjson.loads((out / "crash.json").read_bytes())
    assert sorted(r["scenario"] for r in data["scenarios"]) == sorted(scenarios.split(","))
    for rec in data["scenarios"]:
        assert rec.get("error") is None, rec
        assert (rec["lost"], rec["distinct"], rec["dead_letters"]) == (0, 40_000, 0), rec
        if rec["victim"] is not None:
            # The victim was killed mid-drain (not before the first output nor after the last) and restarted.
            assert 0 < rec["outputs_at_kill"] < 40_000 + rec["duplicated"], rec
            assert 0.2 <= rec["kill_after_s"] <= 0.4, rec
            assert rec["outage_ms"] is not None and rec["restart_s"] > 0, rec
    print((out / "crash.md").read_text())


@pytest.mark.kafka
def test_bench_stopped_with_sigterm_stops_every_process_it_started(kafka_broker: LocalKafka, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "streampod", "bench", "--crash", "--messages", "200000", "--sizes", "1000",
            "--scenarios", "streampod", "--bootstrap", kafka_broker.bootstrap_servers,
            "--workdir", str(tmp_path / "work")]  # fmt: skip
    bench = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        parent = psutil.Process(bench.pid)
        deadline = time.monotonic() + 120
        children: list[psutil.Process] = []
        while len(children) < 3 and time.monotonic() < deadline and bench.poll() is None:
            children = parent.children(recursive=True)
            time.sleep(0.2)
        assert len(children) >= 3, "the stage's three services never started"
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(90) == 128 + signal.SIGTERM
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if bench.poll() is None:
            bench.kill()


@pytest.mark.kafka
def test_bench_count_reads_instructions_per_message_under_callgrind_and_loses_nothing(
    kafka_broker: LocalKafka, tmp_path: Path
) -> None:
    why = count.valgrind_missing()
    if why:
        pytest.skip(f"bench --count needs valgrind: {why}")
    # The in-process limit alone: the streampod variant's three services start under valgrind in minutes.
    out = tmp_path / "results"
    argv = [sys.executable, "-m", "streampod", "bench", "--count", "--messages", "2000", "--sizes", "100",
            "--variants", "in-process", "--bootstrap", kafka_broker.bootstrap_servers,
            "--out", str(out), "--workdir", str(tmp_path / "work")]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    [rec] = orjson.loads((out / "count.json").read_bytes())["counts"]
    assert rec.get("error") is None, rec
    assert (rec["lost"], rec["distinct"], rec["dead_letters"]) == (0, 4000, 0), rec
    # Consuming, transforming and producing a message takes tens of thousands of instructions (about
    # 34,000 here in 2026-12); a few hundred would mean the counters were read before the messages passed.
    assert 5_000 < rec["per_message"] < 5_000_000, rec
    assert rec["processes"]["inprocess"]["per_message"] == rec["per_message"]
    print((out / "count.md").read_text())
