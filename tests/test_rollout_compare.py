"""The comparison report: pairing, agreement with tolerances, dead letters, latency, the gate."""

from __future__ import annotations

import orjson

from streampod.rollout.compare import OutputRecord, Thresholds, as_markdown, as_text, compare, gate, percentile


def rec(pair: str, value: object, *, out_ms: int = 1100, in_ms: int = 1000) -> OutputRecord:
    return OutputRecord(pair, pair, orjson.dumps(value), out_ms, in_ms)


def test_exact_and_tolerant_agreement_and_mismatch_examples():
    active = [rec(f"i{n}", {"score": n, "label": "a"}) for n in range(10)]
    candidate = [rec(f"i{n}", {"score": n + (0.001 if n else 5), "label": "a"}) for n in range(10)]
    report = compare(active, candidate, tolerances={"score": 0.01})
    assert report.paired == 10
    assert report.agreement_exact == 0.0
    assert report.agreement_tolerant == 0.9
    assert [m["input"] for m in report.mismatches] == ["i0"]
    assert report.mismatches[0]["fields"] == ["score"]


def test_redelivered_outputs_count_once_and_unpaired_are_reported():
    active = [rec("i1", 1), rec("i1", 1), rec("i2", 2)]
    candidate = [rec("i1", 1), rec("i3", 3)]
    report = compare(active, candidate)
    assert (report.paired, report.only_active, report.only_candidate) == (1, 1, 1)
    assert report.agreement_exact == 1.0


def test_dead_letters_give_the_error_rate_and_latency_percentiles():
    active = [rec(f"i{n}", n, out_ms=1000 + n, in_ms=1000) for n in range(1, 101)]
    candidate = [rec(f"i{n}", n) for n in range(1, 91)]
    dead = [OutputRecord(f"i{n}", None, b"x", 2000, 1000, "boom") for n in range(91, 101)]
    report = compare(active, candidate, candidate_dead=dead)
    assert report.candidate.inputs_answered == 100
    assert report.candidate.error_rate == 0.1
    assert report.active.latency_p50_ms == 50
    assert report.active.latency_p99_ms == 99


def test_the_gate_lists_every_threshold_missed():
    report = compare([rec("i1", 1)], [rec("i1", 2)], candidate_dead=[OutputRecord("i2", None, None, 1, 1, "x")])
    gate(report, Thresholds(min_agreement=0.99, max_error_rate=0.01, min_samples=100))
    assert len(report.failures) == 3
    assert not report.passed
    assert "FAILED" in as_text(report)
    assert "Gate: FAILED" in as_markdown(report)


def test_percentile_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile(list(range(1, 11)), 50) == 5
