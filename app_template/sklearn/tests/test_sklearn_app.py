"""Tests of app.py with plain pytest: no broker, no network (see streampod.testing)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from streampod.testing import AppHarness, assert_dead_lettered, assert_ok, assert_rejected, replay

PROJECT = Path(__file__).resolve().parent.parent
SAMPLES = [orjson.loads(line) for line in (PROJECT / "samples.jsonl").read_bytes().splitlines() if line.strip()]
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def direct_predictions(app: AppHarness, model_dir: Path, values: list[dict[str, Any]]) -> list[str]:
    """What the model itself predicts for these records, without streampod."""
    model, _ = app.module.load_model(model_dir)
    x = np.array([[v[f] for f in app.module.FEATURES] for v in values])
    return [str(p) for p in model.predict(x)]


def test_predictions_are_the_models_own(app: AppHarness, model_dir: Path) -> None:
    valid = SAMPLES[:10]
    results = app.send(valid)
    assert_ok(results)
    assert [r.value["prediction"] for r in results] == direct_predictions(app, model_dir, [s["value"] for s in valid])
    assert results[0].value["prediction"] == "setosa"


def test_an_output_carries_version_probabilities_and_where_its_input_was_read(app: AppHarness) -> None:
    result = app.send_one(SETOSA, key="plot-1")
    out = result.value
    assert out["model_version"] == app.module.metadata["version"]
    assert set(out["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert out["input"] == {"id": result.id, "topic": "harness", "partition": 0, "offset": 0}
    assert result.outputs[0].key == "plot-1"  # the input's key: per-key order is kept downstream


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({**SETOSA, "petal_width": "wide"}, "value.petal_width: Input should be a valid number"),
        ({k: v for k, v in SETOSA.items() if k != "sepal_width"}, "value.sepal_width: Field required"),
        ({**SETOSA, "petal_length": -1}, "value.petal_length: Input should be greater than 0"),
        ([5.1, 3.5, 1.4, 0.2], "value: Input should be a valid dictionary"),
    ],
)
def test_an_invalid_record_is_rejected_naming_the_field(app: AppHarness, value: Any, reason: str) -> None:
    result = app.send_one(value, key="bad")
    assert_rejected(result, contains=reason)
    assert result.outputs == []


def test_one_invalid_record_does_not_hold_back_the_batch(app: AppHarness) -> None:
    good, bad, good2 = app.send([{"value": SETOSA}, {"value": {"sepal_length": 1}}, {"value": SETOSA}])
    assert_ok([good, good2])
    assert_rejected(bad, contains="value.sepal_width")


def test_a_batch_is_scored_in_one_call(app: AppHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = app.module.model

    class Counting:
        classes_ = real.classes_

        def predict(self, x: Any) -> Any:
            calls.append(len(x))
            return real.predict(x)

        def predict_proba(self, x: Any) -> Any:
            return real.predict_proba(x)

    monkeypatch.setattr(app.module, "model", Counting())
    assert_ok(app.send([{"value": SETOSA}] * 50))
    assert calls == [50]


def test_every_sample_is_answered(app: AppHarness) -> None:
    results = app.send(SAMPLES)
    assert [r.status for r in results] == ["ok"] * 10 + ["reject"] * 2


def test_a_model_file_that_does_not_match_its_metadata_is_refused(model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    (broken / "model.joblib").write_bytes(b"not the model")
    with pytest.raises(RuntimeError, match=r"is not the file model\.json describes"):
        AppHarness(PROJECT / "app.py", model_path=broken)


def test_the_samples_through_the_three_real_processes(model_dir: Path, tmp_path: Path) -> None:
    result = replay(PROJECT / "app.py", PROJECT / "samples.jsonl", workdir=tmp_path, model_path=model_dir)
    assert [o.key for o in result.outputs] == [s["key"] for s in SAMPLES[:10]]
    assert all(o.value["prediction"] in {"setosa", "versicolor", "virginica"} for o in result.outputs)
    missing, wide = result.dead_letters
    assert_dead_lettered(missing, contains="value.petal_width: Field required")
    assert_dead_lettered(wide, contains="value.sepal_length: Input should be a valid number")
