"""The benchmark harness's arithmetic and report, without a broker."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from streampod.bench import cli, hostprobe, measure, profiling, report, transform, variants, workload
from streampod.bench.runner import FIXED, Config, Results, is_saturated, medians, points


def test_transform_adds_one_field_and_keeps_the_rest() -> None:
    raw = workload.Values(100).value(7, 1_700_000_000_000)
    out = orjson.loads(transform.transform(raw))
    assert out == {**orjson.loads(raw), "processed": True}


@pytest.mark.parametrize("size", [100, 1000])
def test_values_have_about_the_asked_size_and_start_with_id_and_ts(size: int) -> None:
    v = workload.Values(size)
    raw = v.value(999_999, 1_763_800_000_123)
    assert size <= len(raw) <= size + 10
    assert measure.head(raw) == (999_999, 1_763_800_000_123)
    assert {v.key(i) for i in range(25_000)} == {b"k%d" % i for i in range(workload.KEYS)}


def test_head_reads_spaced_json_and_falls_back_to_parsing() -> None:
    assert measure.head(b'{"id": 5, "ts": 6, "x": 1}') == (5, 6)
    assert measure.head(b'{"ts": 6, "id": 5}') == (5, 6)


def test_count_ids_finds_lost_duplicated_and_foreign() -> None:
    c = measure.count_ids([10, 11, 11, 13, 99], first_id=10, n=4)
    assert (c.outputs, c.distinct, c.lost, c.duplicated) == (5, 3, 1, 2)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 1001))
    assert measure.percentile(values, 50) == 500
    assert measure.percentile(values, 99) == 990
    assert measure.percentile(values, 99.9) == 999
    assert measure.percentile(values, 100) == 1000
    assert measure.percentile([], 50) is None


def test_spectrum_keeps_the_tail_densely_and_ends_at_the_maximum() -> None:
    spec = dict(map(tuple, measure.spectrum(list(range(1, 100_001)))))
    assert (spec[0.0], spec[50.0], spec[99.0], spec[99.99], spec[100.0]) == (1, 50_000, 99_000, 99_990, 100_000)
    assert measure.spectrum([]) == []


def test_distribution_has_one_curve_per_run_without_saturated_points_or_the_maximum() -> None:
    r = _results()
    curves = report.distribution(r, 100, "50%")
    assert list(curves) == ["streampod"]
    assert curves["streampod"] == [[(50.0, 5.0), (99.0, 90.0 + run)] for run in (1, 2)]
    r.open_loop[0]["msgs_per_s"] = 100.0  # run 1 of 100 B came out at a fifth of its input: a queue
    assert report.distribution(r, 100, "50%")["streampod"] == [[(50.0, 5.0), (99.0, 92.0)]]
    for rec in r.open_loop:  # a results.json from before the percentiles were kept
        rec.pop("percentiles_ms", None)
    assert report.distribution(r, 1000, "50%") == {}


def test_steady_rate_leaves_out_warm_up_and_tail() -> None:
    # 1,000 outputs one ms apart after a 5 s start-up gap for the first 50.
    appended = [0] * 50 + [5_000 + i for i in range(950)]
    rate, t_lo, _ = measure.steady_rate(appended)
    assert rate == pytest.approx(1000, rel=0.01)
    assert t_lo >= 5.0
    assert measure.steady_rate([1, 2])[0] is None


def test_cpu_between_interpolates_samples() -> None:
    s = measure.Samples(wall=[0.0, 1.0, 2.0], cpu=[0.0, 0.5, 1.5], rss=[1, 3, 2], broker_cpu=[0.0, 1.0, 2.0])
    assert s.cpu_between(0.5, 1.5) == pytest.approx(0.75)
    assert s.cpu_between(0.0, 2.0, broker=True) == pytest.approx(2.0)
    assert s.peak_rss() == 3
    assert s.median_rss_between(0.5, 2.0) == 3  # of the samples at 1.0 and 2.0, the upper middle
    assert s.median_rss_between(0.0, 2.0) == 2
    assert s.median_rss_between(3.0, 4.0) is None


def test_cpu_per_process_is_apart_and_reported(tmp_path: Path) -> None:
    s = measure.Samples(wall=[0.0, 1.0, 2.0], cpu=[0.0, 1.0, 3.0], rss=[1, 1, 1])
    s.cpu_by_process = {
        "app": [(0.0, 0.0), (1.0, 0.25), (2.0, 1.0)],
        "input-reader": [(0.0, 0.0), (1.0, 0.75), (2.0, 2.0)],
    }
    assert s.cpu_between_by_process(0.5, 2.0) == pytest.approx({"app": 0.875, "input-reader": 1.625})
    s.cpu_by_process["late"] = [(2.0, 0.1)]  # one sample only: no interval to measure, left out
    assert "late" not in s.cpu_between_by_process(0.0, 2.0)
    r = _results()
    for rec in r.drain:
        if rec["variant"] == "streampod" and rec["size"] == 100:
            rec["cpu_s_per_million_by_process"] = {"app": 30.0 + rec["run"], "input-reader": 20.0}
    report.write(r, tmp_path, png=False)
    md = (tmp_path / "results.md").read_text()
    assert "| 100 B | streampod | app 32, input-reader 20 |" in md  # median of 31 and 32, rounded


def test_collapsed_stacks_are_summarised_by_function() -> None:
    text = (
        "process 1:python;thread (0x1):main;run (a/app.py:3);encode (lib/python3.11/json/encoder.py:9) 3\n"
        "run (a/app.py:3) 1\n"
    )
    summary = profiling.summarise_collapsed(text)
    assert summary["samples"] == 4
    assert summary["self_pct"][0] == ("json/encoder.py:encode", 75.0)
    assert ("a/app.py:run", 100.0) in summary["total_pct"]


def _results() -> Results:
    cfg = Config(messages=1000, sizes=(100, 1000), runs=2, loads=(0.5,), own_loads=())
    r = Results(cfg, {"nproc": 2, "cpu_model": "x", "memory_gib": 1, "os": "L", "python": "3", "confluent_kafka": "2",
                      "librdkafka": "2", "quixstreams": None, "kafka_broker": "b", "load_average_at_start": [0]},
                seed=1)  # fmt: skip
    for run in (1, 2):
        for size in cfg.sizes:
            for name, rate in (("streampod", 800.0 * run), ("in-process", 1000.0), ("per-message", 10.0)):
                r.drain.append({"run": run, "variant": name, "size": size, "load": None, "msgs_per_s": rate,
                                "cpu_s_per_million": 10.0, "broker_cpu_s_per_million": 5.0, "cpu_cores": 1.0,
                                "peak_rss_mb": 320.0, "steady_rss_mb": 290.0 + size / 100 * run, "lost": 0,
                                "duplicated": 0,
                                "host_probe_us": 6.0 if name == "in-process" else 5.0 + run})  # fmt: skip
            r.open_loop.append({"run": run, "variant": "streampod", "size": size, "load": "50%", "p50_ms": 5.0,
                                "p99_ms": 90.0 + run, "p999_ms": 120.0, "max_ms": 130.0, "msgs_per_s": 500.0,
                                "offered_msgs_per_s": 500.0, "target_msgs_per_s": 500.0, "lost": 0, "duplicated": 0,
                                "saturated": False,
                                "percentiles_ms": [[50.0, 5.0], [99.0, 90.0 + run], [100.0, 130.0]]})  # fmt: skip
            r.open_loop.append({"run": run, "variant": "per-message", "size": size, "load": "50%",
                                "skipped": "too slow", "saturated": True, "offered_msgs_per_s": 500.0,
                                "target_msgs_per_s": 500.0})  # fmt: skip
    r.skipped["quix"] = "not installed"
    return r


def test_medians_and_targets() -> None:
    r = _results()
    m = medians(r.drain)
    assert m[("streampod", 100, None)]["msgs_per_s"] == 1200.0
    assert (m[("streampod", 100, None)]["msgs_per_s_min"], m[("streampod", 100, None)]["msgs_per_s_max"]) == (800, 1600)
    met = {t["target"]: t["met"] for t in report.targets(r)}
    assert met["1 KB: streampod ≥ 0.5x in-process throughput (aim 0.8x)"] is True
    assert met["100 B: streampod ≥ 50x the per-message baseline"] is True
    assert met["100 B: streampod ≥ 1.0x Quix Streams (aim 1.5x)"] is None
    assert met["100 B: streampod p99 ≤ 250 ms at 50 % load (aim 100 ms)"] is True
    assert met["1 KB: streampod CPU per message ≤ 2x in-process"] is True
    # Memory is judged at steady state (medians 291.5 and 305 MB); the peak is shown beside it.
    assert met["100 B: the three services ≤ 300 MB RSS at steady state (median over the drain)"] is True
    assert met["1 KB: the three services ≤ 300 MB RSS at steady state (median over the drain)"] is False
    shown = {t["target"]: t["shown"] for t in report.targets(r)}
    # Judged on the ratio of the medians (1200 / 1000); each run's own ratio shown beside it.
    assert shown["100 B: streampod ≥ 0.4x in-process throughput (aim 0.8x)"] == "1.20x (runs 0.80-1.60)"
    assert shown["100 B: streampod CPU per message ≤ 2x in-process"] == "1.00x (every run 1.00x)"
    assert shown["100 B: streampod ≥ 1.0x Quix Streams (aim 1.5x)"] == "-"
    assert shown["1 KB: the three services ≤ 300 MB RSS at steady state (median over the drain)"] == (
        "305 MB (peak 320 MB)"
    )


def test_an_open_loop_point_is_saturated_when_its_output_falls_behind_its_input() -> None:
    kept_up = {"lost": 0, "msgs_per_s": 29_830.0, "offered_msgs_per_s": 29_997.0,
               "p50_first_quarter_ms": 18, "p50_last_quarter_ms": 21}  # fmt: skip
    assert not is_saturated(kept_up)
    # Out at 0.79 of the rate in, with a queue already built during the warm-up (no growth to see).
    assert is_saturated({**kept_up, "msgs_per_s": 26_574.0, "offered_msgs_per_s": 33_693.0})
    assert is_saturated({**kept_up, "p50_first_quarter_ms": 40, "p50_last_quarter_ms": 400})
    assert is_saturated({**kept_up, "lost": 3})
    # A results.json written before the rule: its stored verdict stands, the rule adds to it.
    assert is_saturated({**kept_up, "saturated": True})
    r = _results()
    r.open_loop = [{"run": 1, "variant": "streampod", "size": 100, "load": "50%", **kept_up, "msgs_per_s": 20_000.0}]
    assert medians(r.open_loop)[("streampod", 100, "50%")]["saturated"] is True


def test_report_files(tmp_path: Path) -> None:
    written = report.write(_results(), tmp_path)
    assert [p.name for p in written] == ["results.json", "results.md", "results.png"]
    md = (tmp_path / "results.md").read_text()
    assert "**Quix Streams not measured**: not installed" in md
    assert "| per-message baseline | 100 B | 50% | 500 | - |" in md
    data = orjson.loads((tmp_path / "results.json").read_bytes())
    assert {t["met"] for t in data["targets"]} == {True, False, None}
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    # The host's speed around the points: per row (median of its runs) and over the whole run.
    assert "| 0 | 0 | 6.5 |" in md  # streampod: probes of 6.0 and 7.0 µs in its two runs
    assert "median 6.0, range 6.0-7.0 over 12 points" in md


def test_host_probe_times_the_transform_on_every_allowed_cpu() -> None:
    figures = hostprobe.probe(seconds_per_cpu=0.01)
    cpus = sorted(os.sched_getaffinity(0))
    assert list(figures) == [f"cpu{c}" for c in cpus]
    # One transform of a 1 KB value takes microseconds on any host this runs on, not nanoseconds or seconds.
    assert all(0.1 < us < 10_000 for us in figures.values())
    assert os.sched_getaffinity(0) == set(cpus)  # the bench's thread is unpinned again
    assert hostprobe.summary([{"cpu0": 5.0, "cpu1": 9.0}, {"cpu0": 6.0, "cpu1": 7.0}]) == 6.5
    assert hostprobe.summary([]) is None


def test_open_loop_points_at_fractions_and_at_fixed_rates() -> None:
    cfg, _ = cli.parse(["--loads", "", "--own-loads", "0.5", "--rates", "1000,4000", "--no-install"])
    assert (cfg.loads, cfg.own_loads, cfg.rates) == ((), (0.5,), (1000.0, 4000.0))
    assert points(cfg) == [("50% of own", None, 0.5), ("1,000/s", FIXED, 1000.0), ("4,000/s", FIXED, 4000.0)]
    # The full report keeps the points: 25/50/75 % of the in-process rate and 50 % of each one's own.
    full, _ = cli.parse(["--full"])
    assert (full.loads, full.own_loads, full.rates) == ((0.25, 0.5, 0.75), (0.5,), ())


def test_streampod_env_tunes_the_three_services_and_is_reported(tmp_path: Path) -> None:
    cfg, _ = cli.parse(["--streampod-env", "STREAMPOD_BATCH_MAX_MESSAGES=1000", "--streampod-env", "STREAMPOD_X=a=b"])
    assert cfg.streampod_env == (("STREAMPOD_BATCH_MAX_MESSAGES", "1000"), ("STREAMPOD_X", "a=b"))
    v = variants.make("streampod", install_quix=False, streampod_env=dict(cfg.streampod_env))
    assert isinstance(v, variants.Streampod) and v.env["STREAMPOD_X"] == "a=b"
    with pytest.raises(SystemExit):
        cli.parse(["--streampod-env", "BATCH=1"])  # not a streampod setting: refused at the command line
    r = _results()
    r.config = replace(r.config, streampod_env=cfg.streampod_env)
    report.write(r, tmp_path, png=False)
    md = (tmp_path / "results.md").read_text()
    assert "**streampod not at its defaults**: `STREAMPOD_BATCH_MAX_MESSAGES=1000`" in md


def test_hop_means_come_from_the_services_histograms(tmp_path: Path) -> None:
    text = (
        "# TYPE streampod_reader_batch_seconds histogram\n"
        'streampod_reader_batch_seconds_bucket{le="+Inf"} 4.0\n'
        "streampod_reader_batch_seconds_count 4.0\n"
        "streampod_reader_batch_seconds_sum 0.2\n"
        "# TYPE streampod_reader_messages_in_total counter\n"
        "streampod_reader_messages_in_total 7.0\n"
    )
    assert variants.histogram_totals(text) == {"streampod_reader_batch_seconds": (0.2, 4.0)}
    r = _results()
    for rec in r.open_loop:
        rec["hops"] = {"batch_messages": 40.0 + rec["run"], "reader_round_trip_ms": 50.0, "app_batch_ms": None}
    report.write(r, tmp_path, png=False)
    md = (tmp_path / "results.md").read_text()
    assert "| 100 B | 50% | 41.5 | 50.0 | - | - | - | - |" in md


def test_per_run_ratios_pair_variants_within_a_run_only() -> None:
    r = _results()
    # Run 2's in-process drain failed to measure: run 2 has no pair, and a skipped record counts for none.
    r.drain = [rec for rec in r.drain if not (rec["run"] == 2 and rec["variant"] == "in-process")]
    r.drain.append({"run": 3, "variant": "in-process", "size": 100, "load": None, "skipped": "no broker"})
    r.drain.append({"run": 3, "variant": "streampod", "size": 100, "load": None, "msgs_per_s": 900.0})
    assert report.per_run_ratios(r.drain, "streampod", "in-process", 100, "msgs_per_s") == [0.8]
    assert report.per_run_ratios(r.drain, "streampod", "per-message", 100, "msgs_per_s") == [80.0, 160.0]
    target = next(t for t in report.targets(r) if t["target"].startswith("100 B: streampod ≥ 0.4x"))
    assert target["per_run"] == [0.8]
    assert target["shown"] == f"{target['measured']:.2f}x"  # one pair: no range to show


def test_render_writes_the_same_report_from_results_json(tmp_path: Path) -> None:
    r = _results()
    r.config = replace(r.config, streampod_env=(("STREAMPOD_LINGER_MS", "2"),))
    report.write(r, tmp_path / "run", png=False)
    data = orjson.loads((tmp_path / "run" / "results.json").read_bytes())
    again = Results.from_json(data)
    assert again.config == r.config
    assert (again.drain, again.open_loop, again.skipped) == (r.drain, r.open_loop, r.skipped)
    assert cli.main(["--render", str(tmp_path / "run" / "results.json"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "results.md").read_text() == (tmp_path / "run" / "results.md").read_text()
    assert orjson.loads((tmp_path / "again" / "results.json").read_bytes()) == data
