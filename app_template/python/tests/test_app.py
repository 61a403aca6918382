"""Tests of app.py, run with plain pytest: no broker, no network (see streampod.testing)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streampod.testing import AppHarness, assert_ok, assert_rejected

HERE = Path(__file__).resolve().parent.parent


@pytest.fixture
def app() -> Iterator[AppHarness]:
    with AppHarness(HERE / "app.py") as harness:
        yield harness


def test_an_order_gets_its_usd_amount_and_flag(app: AppHarness) -> None:
    small, big = app.send(
        [
            {"key": "u1", "value": {"user": "u1", "amount": 12.5, "currency": "EUR"}},
            {"key": "u2", "value": {"user": "u2", "amount": 1500, "currency": "USD"}},
        ]
    )
    assert_ok([small, big])
    assert small.value == {"user": "u1", "amount": 12.5, "currency": "EUR", "amount_usd": 13.5, "flagged": False}
    assert big.value["flagged"] is True
    assert small.outputs[0].key == "u1"  # same key as the input: per-user order is kept downstream


def test_an_invalid_order_is_rejected_naming_the_field(app: AppHarness) -> None:
    result = app.send_one({"user": "u8", "amount": "a lot", "currency": "EUR"}, key="u8")
    assert_rejected(result, contains="value.amount")
    assert result.outputs == []


def test_an_unknown_currency_is_rejected_with_the_exception(app: AppHarness) -> None:
    bad, good = app.send(
        [
            {"key": "u9", "value": {"user": "u9", "amount": 20, "currency": "JPY"}},
            {"key": "u1", "value": {"user": "u1", "amount": 1, "currency": "USD"}},
        ]
    )
    assert_rejected(bad, contains="KeyError: 'JPY'")
    assert_ok(good)  # the rest of the batch goes on


def test_every_sample_is_answered(app: AppHarness) -> None:
    samples = [orjson.loads(line) for line in (HERE / "samples.jsonl").read_text().splitlines() if line]
    results = app.send(samples)
    assert [r.status for r in results].count("reject") == 2  # "a lot" and JPY
    assert_ok([r for r in results if r.status != "reject"])
