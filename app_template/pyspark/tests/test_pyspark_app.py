"""Tests of app.py with plain pytest: no broker, no network; Spark runs in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pyspark.ml import PipelineModel

from streampod.testing import AppHarness, assert_dead_lettered, assert_ok, assert_rejected, replay

PROJECT = Path(__file__).resolve().parent.parent
SAMPLES = [orjson.loads(line) for line in (PROJECT / "samples.jsonl").read_bytes().splitlines() if line.strip()]
PATIENT = SAMPLES[0]["value"]


def direct_predictions(app: AppHarness, model_dir: Path, values: list[dict[str, Any]]) -> list[float]:
    """What the saved model itself predicts for these records: loaded again, one DataFrame, no streampod."""
    features = app.module.FEATURES
    model = PipelineModel.load(str(model_dir / "pipeline"))
    frame = app.module.spark.createDataFrame([[float(v[f]) for f in features] for v in values], features)
    return [r["prediction"] for r in model.transform(frame).select("prediction").collect()]


def test_predictions_are_the_models_own(app: AppHarness, model_dir: Path) -> None:
    valid = SAMPLES[:10]
    results = app.send(valid)
    assert_ok(results)
    assert [r.value["prediction"] for r in results] == direct_predictions(app, model_dir, [s["value"] for s in valid])


def test_an_output_carries_the_version_and_where_its_input_was_read(app: AppHarness) -> None:
    result = app.send_one(PATIENT, key="patient-1")
    out = result.value
    assert isinstance(out["prediction"], float)
    assert out["model_version"] == app.module.metadata["version"]
    assert out["input"] == {"id": result.id, "topic": "harness", "partition": 0, "offset": 0}
    assert result.outputs[0].key == "patient-1"  # the input's key: per-key order is kept downstream


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({**PATIENT, "bmi": "high"}, "value.bmi: Input should be a valid number"),
        ({k: v for k, v in PATIENT.items() if k != "glu"}, "value.glu: Field required"),
        ({**PATIENT, "sex": 3}, "value.sex: Input should be less than or equal to 2"),
    ],
)
def test_an_invalid_record_is_rejected_naming_the_field(app: AppHarness, value: Any, reason: str) -> None:
    result = app.send_one(value, key="bad")
    assert_rejected(result, contains=reason)
    assert result.outputs == []


def test_a_batch_is_one_dataframe_scored_once(app: AppHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = app.module.model

    class Counting:
        def transform(self, frame: Any) -> Any:
            sizes.append(frame.count())
            return real.transform(frame)

    monkeypatch.setattr(app.module, "model", Counting())
    results = app.send([{"value": PATIENT}] * 40 + [{"value": {"age": 1}}])
    assert_ok(results[:40])
    assert sizes == [40]  # the invalid record never reached Spark


def test_spark_runs_in_this_process_on_loopback_without_a_ui(app: AppHarness) -> None:
    spark = app.module.spark
    assert spark.sparkContext.master == "local[1]"
    assert spark.sparkContext.uiWebUrl is None
    assert spark.conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "1"


def test_every_sample_is_answered(app: AppHarness) -> None:
    results = app.send(SAMPLES)
    assert [r.status for r in results] == ["ok"] * 10 + ["reject"] * 2


def test_the_samples_through_the_three_real_processes(model_dir: Path, tmp_path: Path) -> None:
    result = replay(PROJECT / "app.py", PROJECT / "samples.jsonl", workdir=tmp_path, model_path=model_dir)
    assert [o.key for o in result.outputs] == [s["key"] for s in SAMPLES[:10]]
    assert all(isinstance(o.value["prediction"], float) for o in result.outputs)
    missing, high = result.dead_letters
    assert_dead_lettered(missing, contains="value.glu: Field required")
    assert_dead_lettered(high, contains="value.bmi: Input should be a valid number")
