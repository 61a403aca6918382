"""Your pipeline stage: a Spark ML PipelineModel that scores each HTTP batch as one DataFrame.

``setup(settings)`` starts a local SparkSession (spark_session.py) and loads the model once, from
``settings.model_path`` (the variable STREAMPOD_MODEL_PATH; unset: ``model/`` beside this file, as
``python train.py`` writes it). ``process_batch(messages)`` gets every valid record of a batch
(``message.value`` is already a ``Patient``, the InputModel below: a record that does not fit is
dead-lettered with a reason naming the field), makes ONE DataFrame of them and runs the model
once. Each output carries the prediction, the model version and where its input was read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pyspark.ml import PipelineModel
from pyspark.sql import SparkSession
from pyspark.sql.types import DoubleType, LongType, StructField, StructType

from streampod.app import Message
from streampod.settings import AppSettings

from spark_session import local_session

MODEL_DIR = Path(__file__).resolve().parent / "model"
PIPELINE_DIR = "pipeline"  # what PipelineModel.save() wrote
METADATA_FILE = "model.json"


class Patient(BaseModel):
    """One input record. The fields are the model's features, in the order it was trained on."""

    model_config = ConfigDict(allow_inf_nan=False)  # other fields in the record are ignored

    age: float = Field(ge=0, le=120, description="years")
    sex: float = Field(ge=1, le=2, description="1 or 2, as in the data set")
    bmi: float = Field(gt=0, le=100, description="body mass index")
    bp: float = Field(gt=0, le=300, description="average blood pressure")
    tc: float = Field(ge=0, description="total serum cholesterol")
    ldl: float = Field(ge=0, description="low-density lipoproteins")
    hdl: float = Field(ge=0, description="high-density lipoproteins")
    tch: float = Field(ge=0, description="total cholesterol / HDL")
    ltg: float = Field(ge=0, description="log of serum triglycerides")
    glu: float = Field(ge=0, description="blood sugar level")


InputModel = Patient
FEATURES = list(Patient.model_fields)
ROW = "_row"  # each record's place in its batch, to put Spark's answers back in order
SCHEMA = StructType([StructField(ROW, LongType(), False)] + [StructField(f, DoubleType(), False) for f in FEATURES])

# Set once by setup(); read-only afterwards.
spark: SparkSession | None = None
model: Any = None
metadata: dict[str, Any] = {}


def load_model(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The PipelineModel and its metadata, checked against this code (needs the SparkSession)."""
    metadata = json.loads((folder / METADATA_FILE).read_text())
    if metadata["features"] != FEATURES:
        raise RuntimeError(f"the model was trained on {metadata['features']}, the InputModel gives {FEATURES}")
    return PipelineModel.load(str(folder / PIPELINE_DIR)), metadata


def setup(settings: AppSettings) -> None:
    global spark, model, metadata
    spark = local_session()
    model, metadata = load_model(settings.model_path or MODEL_DIR)
    # Score one record now: the first job pays for Spark's code generation, not the first real batch.
    score([[40.0, 1.0, 25.0, 90.0, 190.0, 110.0, 50.0, 4.0, 4.6, 90.0]])


def score(rows: list[list[float]]) -> list[float]:
    """The model's prediction for each row of feature values, in order: one Spark job."""
    assert spark is not None, "setup() has not run"
    frame = spark.createDataFrame([(i, *row) for i, row in enumerate(rows)], SCHEMA)
    predictions = [0.0] * len(rows)
    for r in model.transform(frame).select(ROW, "prediction").collect():
        predictions[r[ROW]] = r["prediction"]
    return predictions


def process_batch(messages: list[Message]) -> list[dict[str, Any]]:
    predictions = score([[float(getattr(m.value, f)) for f in FEATURES] for m in messages])
    return [
        {"prediction": p, "model_version": metadata["version"], "input": source(m)}
        for m, p in zip(messages, predictions, strict=True)
    ]


def source(message: Message) -> dict[str, Any]:
    """Where the input was read, so a prediction can be joined back to its record."""
    src = message.source
    if src is None:
        return {"id": message.id}
    return {"id": message.id, "topic": src.topic, "partition": src.partition, "offset": src.offset}
