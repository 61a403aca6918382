"""``streampod bench --count``: callgrind's counters, the ratios, the options and the report, without a broker."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
import pytest

from streampod.bench import cli, count, variants

CALLGRIND_OUT = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  python -m streampod.bench.inprocess
part: 1

desc: I1 cache:
events: Ir
summary: 123456789

fl=(1) ???
fn=(1) 0x0000000000001000
0 5
totals: 123456789
"""


def _record(variant: str, size: int, **per_process: int) -> dict[str, object]:
    processes = {
        name: {"instructions": n * 1000, "per_message": n, "idle_per_s": 10, "busy_per_message": n - 1}
        for name, n in per_process.items()
    }
    return {
        "variant": variant,
        "size": size,
        "messages": 1000,
        "window_s": 5.0,
        "processes": processes,
        "per_message": sum(per_process.values()),
        "busy_per_message": sum(n - 1 for n in per_process.values()),
        "lost": 0,
        "duplicated": 0,
    }


def test_the_total_is_read_from_the_totals_line(tmp_path: Path) -> None:
    out = tmp_path / "app.4242.1"
    out.write_text(CALLGRIND_OUT)
    assert count.callgrind_total(out) == 123_456_789
    # An older callgrind writes only the summary line.
    out.write_text(CALLGRIND_OUT.replace("totals: 123456789\n", ""))
    assert count.callgrind_total(out) == 123_456_789


def test_a_file_without_counters_is_refused_by_name(tmp_path: Path) -> None:
    out = tmp_path / "app.log"
    out.write_text("INFO started\n")
    with pytest.raises(ValueError, match=r"app\.log: no totals or summary line"):
        count.callgrind_total(out)


def test_each_process_runs_under_callgrind_writing_its_own_file(tmp_path: Path) -> None:
    grind = count.Callgrind(tmp_path / "cg")
    argv = grind.wrap("app", [sys.executable, "-m", "streampod", "app"])
    assert argv[:2] == ["valgrind", "--tool=callgrind"]
    assert argv[2] == f"--callgrind-out-file={tmp_path / 'cg'}/app.%p"
    assert argv[3:] == [sys.executable, "-m", "streampod", "app"]


def test_a_variants_processes_start_through_its_argv_wrapper(tmp_path: Path) -> None:
    seen: list[tuple[str, list[str]]] = []

    def wrapper(name: str, argv: list[str]) -> list[str]:
        seen.append((name, argv))
        return [sys.executable, "-c", "pass"]

    v = variants.InProcess()
    v.argv_wrapper = wrapper
    job = variants.Job("127.0.0.1:9", "in", "out", "g", tmp_path, "g.dlq")
    v.start(job)
    try:
        assert [name for name, _ in seen] == ["inprocess"]
        assert seen[0][1][1:3] == ["-m", "streampod.bench.inprocess"]
        deadline = time.monotonic() + 30
        while v.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        # What ran was the wrapper's command: it exited 0 by itself.
        assert v.stop() == {"inprocess": 0}


def test_the_summary_divides_by_the_in_process_limit_of_the_same_size() -> None:
    counts = [
        _record("in-process", 100, inprocess=30_000),
        _record("streampod", 100, **{"input-reader": 30_000, "app": 45_000, "output-writer": 45_000}),
        _record("in-process", 1000, inprocess=100_000),
        _record("streampod", 1000, **{"input-reader": 60_000, "app": 140_000, "output-writer": 65_000}),
        {"variant": "quix", "size": 1000, "messages": 1000, "error": "RuntimeError: a process exited"},
    ]
    rows = {(r["variant"], r["size"]): r for r in count.summary(counts)}
    assert rows[("streampod", 100)]["x_in_process"] == 4.0
    assert rows[("streampod", 1000)]["x_in_process"] == 2.65
    assert rows[("in-process", 1000)]["x_in_process"] == 1.0
    assert ("quix", 1000) not in rows
    assert rows[("streampod", 1000)]["x_quix"] is None
    # Without an in-process count of that size there is nothing to divide by.
    assert count.summary(counts[1:2])[0]["x_in_process"] is None
    with_quix = [*counts[:2], _record("quix", 100, quix=150_000)]
    assert count.summary(with_quix)[1]["x_quix"] == 0.8


def test_the_report_shows_each_process_and_every_failed_count(tmp_path: Path) -> None:
    results = count.CountResults(
        count.CountConfig(messages=1000, sizes=(100,)),
        {"python": "3.11", "valgrind": "valgrind-3.19.0"},
        skipped={"quix": "not installed"},
        counts=[
            _record("in-process", 100, inprocess=30_000),
            _record("streampod", 100, **{"input-reader": 30_000, "app": 45_000, "output-writer": 45_000}),
            {"variant": "quix", "size": 100, "messages": 1000, "error": "RuntimeError: a process exited"},
        ],
    )
    md = count.markdown(results)
    assert "| streampod | 100 B | 120,000 | 4.00 | - | 119,997 | 4.00 |" in md
    assert "input-reader 30,000 (29,999), app 45,000 (44,999)" in md
    assert "| quix | 100 B | error: RuntimeError: a process exited |  |  |  |  |  |" in md
    assert "- quix skipped: not installed" in md
    # The JSON renders into the same report again.
    [js, _] = count.write(results, tmp_path)
    assert cli.main(["--render", str(js), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "count.md").read_text() == md
    assert orjson.loads(js.read_bytes())["summary"][1]["x_in_process"] == 4.0


def test_the_options_that_apply_to_a_count_are_taken() -> None:
    cfg, a = cli.parse(["--count", "--messages", "5000", "--sizes", "1000", "--variants", "in-process,streampod",
                        "--streampod-env", "STREAMPOD_ENCODING=text", "--no-install"])  # fmt: skip
    counted = cli.count_config(cfg, a)
    assert (counted.messages, counted.sizes, counted.variants) == (5000, (1000,), ("in-process", "streampod"))
    assert counted.streampod_env == (("STREAMPOD_ENCODING", "text"),)
    assert counted.install_quix is False
    assert cli.count_config(*cli.parse(["--count"])) == count.CountConfig()


def test_without_valgrind_a_count_stops_at_once_saying_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "valgrind and callgrind_control not on PATH" in (count.valgrind_missing() or "")
    assert cli.main(["--count", "--workdir", str(tmp_path / "work")]) == 2
    assert "streampod bench --count: valgrind and callgrind_control not on PATH" in capsys.readouterr().out
