"""Helpers for a data scientist's tests beyond AppHarness: dead-letter checks, replay settings, measure's report."""

from __future__ import annotations

import pytest

from streampod.measure import report
from streampod.testing import Record, assert_dead_lettered, replay

DEAD = Record("u8", {"amount": "a lot"}, {"streampod-error": "value.amount: Input should be a valid number"})
OUTPUT = Record("u1", {"amount": 1}, {"streampod-source-offset": "0"})


def test_assert_dead_lettered_checks_each_reason() -> None:
    assert DEAD.reason == "value.amount: Input should be a valid number"
    assert OUTPUT.reason is None
    assert_dead_lettered(DEAD, contains="value.amount")
    assert_dead_lettered([DEAD, DEAD])
    with pytest.raises(AssertionError, match=r"lacks 'value\.currency'"):
        assert_dead_lettered(DEAD, contains="value.currency")
    with pytest.raises(AssertionError, match="not a dead letter"):
        assert_dead_lettered([DEAD, OUTPUT])
    with pytest.raises(AssertionError, match="got none"):
        assert_dead_lettered([])


def test_replay_refuses_a_setting_the_app_does_not_have(tmp_path) -> None:
    with pytest.raises(TypeError, match="model_pth"):
        replay("app.py", [], workdir=tmp_path, model_pth="model/")


def test_the_measure_report_suggests_a_probe_with_room_for_twice_the_slowest_start() -> None:
    text = report([11.8, 24.6], {1: [0.2, 0.1, 0.3], 500: [0.5] * 20}, 700.4)
    assert "slowest 24.6 s" in text
    assert "resident memory once warm (app process and its children): 700 MiB" in text
    assert "| 1 | 200.0 | 300.0 | 300.0 | 200000 |" in text
    assert "| 500 | 500.0 | 500.0 | 500.0 | 1000 |" in text
    assert "startupProbe: {periodSeconds: 2, failureThreshold: 25, timeoutSeconds: 2}" in text
    # A fast app still gets the floor of 10 probes.
    assert "failureThreshold: 10," in report([1.0], {}, None)
