"""``streampod bench --crash``: its arithmetic, its options and its report, without a broker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from streampod.bench import cli, crash, variants


def test_outage_is_the_longest_gap_that_ends_after_the_kill() -> None:
    # A longer gap before the kill (start-up, say) does not count; the one across the kill does.
    appended = [1_000, 3_000, 3_010, 3_020, 3_700, 3_705, 5_000]
    assert crash.outage_ms(appended, kill_ms=3_500) == 1_295
    assert crash.outage_ms(appended, kill_ms=3_030) == 1_295
    assert crash.outage_ms(list(reversed(appended)), kill_ms=3_500) == 1_295
    assert crash.outage_ms(appended, kill_ms=6_000) is None
    assert crash.outage_ms([], kill_ms=0) is None


def test_drain_seconds_run_from_the_first_append_to_the_last() -> None:
    assert crash.drain_seconds([5_000, 1_000, 3_500]) == 4.0
    assert crash.drain_seconds([1_000]) is None


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("streampod", crash.Scenario("streampod")),
        ("streampod:app", crash.Scenario("streampod", "app")),
        ("streampod:input-reader+static", crash.Scenario("streampod", "input-reader", static=True)),
        ("streampod:input-reader+static/term", crash.Scenario("streampod", "input-reader", True, graceful=True)),
        ("quix:quix/term", crash.Scenario("quix", "quix", graceful=True)),
    ],
)
def test_scenarios_name_a_variant_the_process_to_stop_and_how(text: str, parsed: crash.Scenario) -> None:
    assert crash.parse_scenario(text) == parsed


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("per-message:app", "variant must be one of"),
        ("flink", "variant must be one of"),
        ("", "variant must be one of"),
        ("streampod:/term", "need a victim"),
        ("streampod:+static", "need a victim"),
    ],
)
def test_a_scenario_without_a_crashable_variant_or_victim_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        crash.parse_scenario(text)


def test_every_default_victim_is_a_process_its_variant_can_crash() -> None:
    for scenario in crash.SCENARIOS:
        name, victim, _, _ = crash.parse_scenario(scenario)
        if victim is not None:
            assert scenario in crash._TITLES
            v = variants.make(name, install_quix=False)
            assert isinstance(v, variants.Crashable)
            assert victim in v.victims


def test_each_scenario_logs_into_a_folder_of_its_own() -> None:
    names = [crash.scenario_dirname(s) for s in crash.SCENARIOS]
    assert len(set(names)) == len(names)
    assert all("/" not in n and ":" not in n for n in names)
    assert crash.scenario_dirname("streampod:input-reader+static/term") == "streampod-input-reader-static-term"


def _rec(run: int, scenario: str, drain_s: float, **more: object) -> dict[str, object]:
    name, victim, static, graceful = crash.parse_scenario(scenario)
    return {"run": run, "scenario": scenario, "variant": name, "victim": victim, "static": static, "graceful": graceful,
            "drain_s": drain_s, "lost": 0, "duplicated": 0, **more}  # fmt: skip


def test_summary_takes_the_extra_seconds_against_the_same_runs_drain_without_a_crash() -> None:
    records = [
        _rec(1, "streampod", 8.0),
        _rec(1, "streampod:app", 9.0, outage_ms=600, restart_s=0.6, duplicated=1_000),
        _rec(2, "streampod", 10.0),
        _rec(2, "streampod:app", 13.0, outage_ms=800, restart_s=0.7, duplicated=3_000),
        _rec(1, "in-process", 5.0),
        _rec(1, "in-process:inprocess", 50.0, outage_ms=45_000, lost=2, error="2 message(s) lost"),
    ]
    rows = {r["scenario"]: r for r in crash.summary(records)}
    assert list(rows) == ["streampod", "streampod:app", "in-process", "in-process:inprocess"]
    app = rows["streampod:app"]
    # Run 1: +1.0 s, run 2: +3.0 s; the median of the differences, not the difference of the medians.
    assert (app["runs"], app["extra_s"], app["outage_ms"], app["duplicated"]) == (2, 2.0, 700, 2_000)
    assert (app["outage_ms_range"], app["duplicated_range"]) == ([600, 800], [1_000, 3_000])
    results = crash.CrashResults(crash.CrashConfig(messages=100_000, runs=2), {}, seed=1, scenarios=records)
    assert "| streampod, app killed | 11.0 | +2.0 | 700 (600-800) | 0.65 | 2,000 (1,000-3,000; 2.00 %) | 0 |" in (
        crash.markdown(results)
    )
    assert rows["streampod"]["extra_s"] is None
    assert rows["in-process:inprocess"]["lost"] == 2
    assert rows["in-process:inprocess"]["errors"] == ["2 message(s) lost"]


def test_the_report_has_a_row_per_scenario_and_shows_losses_and_errors(tmp_path: Path) -> None:
    cfg = crash.CrashConfig(messages=100_000, scenarios=("streampod", "streampod:output-writer"))
    results = crash.CrashResults(cfg, {"nproc": 2, "kafka_broker": "local"}, seed=7, skipped={"quix": "not here"})
    results.scenarios = [
        _rec(1, "streampod", 4.0),
        _rec(1, "streampod:output-writer", 4.5, outage_ms=640, restart_s=0.62, duplicated=250),
    ]
    md = crash.markdown(results)
    assert "| streampod, output writer killed | 4.5 | +0.5 | 640 | 0.62 | 250 (0.25 %) | 0 |" in md
    assert "| streampod, no crash | 4.0 | - | - | - | 0 (0.00 %) | 0 |" in md
    assert "quix skipped: not here" in md
    assert "not at its defaults" not in md
    tuned = crash.CrashResults(replace(cfg, streampod_env=(("STREAMPOD_LINGER_MS", "5"),)), {}, seed=7)
    assert "- **streampod not at its defaults**: `STREAMPOD_LINGER_MS=5`" in crash.markdown(tuned)
    written = crash.write(results, tmp_path)
    data = orjson.loads((tmp_path / "crash.json").read_bytes())
    assert [p.name for p in written] == ["crash.json", "crash.md"]
    assert data["config"]["scenarios"] == ["streampod", "streampod:output-writer"]
    assert data["summary"][1]["extra_s"] == 0.5


def test_crash_options_reach_the_crash_config() -> None:
    cfg, a = cli.parse(["--crash", "--messages", "20000", "--sizes", "100", "--scenarios", "streampod,streampod:app",
                        "--kill-after-s", "0.5", "--seed", "3", "--no-install",
                        "--streampod-env", 'STREAMPOD_KAFKA_EXTRA_CONFIG={"session.timeout.ms": "10000"}'])  # fmt: skip
    c = cli.crash_config(cfg, a)
    assert c == crash.CrashConfig(
        messages=20_000, size=100, runs=1, kill_after_s=0.5, kill_after_max_s=0.5,
        scenarios=("streampod", "streampod:app"), seed=3,
        install_quix=False, streampod_env=(("STREAMPOD_KAFKA_EXTRA_CONFIG", '{"session.timeout.ms": "10000"}'),),
    )  # fmt: skip


def test_the_kill_time_is_a_range_by_default_and_the_report_says_which() -> None:
    cfg, a = cli.parse(["--crash", "--kill-after-s", "5-12.5"])
    ranged = cli.crash_config(cfg, a)
    assert (ranged.kill_after_s, ranged.kill_after_max_s) == (5.0, 12.5)
    default = cli.crash_config(*cli.parse(["--crash"]))
    assert (default.kill_after_s, default.kill_after_max_s) == (10.0, 15.0)
    report = crash.markdown(crash.CrashResults(default, {}, 1))
    assert "SIGKILL between 10 and 15 s (drawn per scenario) after" in report
    fixed = replace(default, kill_after_s=2.0, kill_after_max_s=2.0)
    assert "SIGKILL 2 s after" in crash.markdown(crash.CrashResults(fixed, {}, 1))


@pytest.mark.parametrize("bad", ["ten", "15-10", "-3", "1-x"])
def test_a_bad_kill_time_stops_the_command_naming_it(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.parse(["--crash", f"--kill-after-s={bad}"])
    assert stopped.value.code == 2
    assert repr(bad) in capsys.readouterr().err


def test_render_writes_the_crash_report_again_from_crash_json(tmp_path: Path) -> None:
    cfg = crash.CrashConfig(messages=100_000, runs=2, scenarios=("streampod", "streampod:app"), seed=5)
    results = crash.CrashResults(cfg, {"nproc": 2}, seed=5, started="a", finished="b")
    results.scenarios = [
        _rec(1, "streampod", 8.0),
        _rec(1, "streampod:app", 9.0, outage_ms=600, restart_s=0.6, duplicated=1_000),
        _rec(2, "streampod", 10.0),
        _rec(2, "streampod:app", 13.0, outage_ms=800, restart_s=0.7, duplicated=3_000),
    ]
    crash.write(results, tmp_path / "first")
    assert cli.main(["--render", str(tmp_path / "first" / "crash.json"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "crash.md").read_text() == crash.markdown(results)
    # A crash.json from before the kill time was a range reads as the one time it had.
    old = orjson.loads((tmp_path / "first" / "crash.json").read_bytes())
    old["config"]["kill_after_s"] = 10.0
    del old["config"]["kill_after_max_s"]
    assert "SIGKILL 10 s after" in crash.markdown(crash.CrashResults.from_json(old))


def test_an_unknown_crash_scenario_stops_the_command_with_its_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--crash", "--scenarios", "streampod:app,per-message:app"]) == 2
    assert "per-message:app" in capsys.readouterr().out
