"""Your pipeline stage: a scikit-learn model that scores each HTTP batch in one vectorised call.

``setup(settings)`` loads the model once, at start, from ``settings.model_path`` (the variable
STREAMPOD_MODEL_PATH; unset: ``model/`` beside this file, as ``python train.py`` writes it).
``process_batch(messages)`` gets every valid record of a batch (``message.value`` is already a
``Flower``, the InputModel below: a record that does not fit is dead-lettered with a reason naming
the field), builds one feature matrix and calls the model once. Each output carries the
prediction, the model version and where its input was read. See README.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from pydantic import BaseModel, ConfigDict, Field

from streampod.app import Message
from streampod.settings import AppSettings

MODEL_DIR = Path(__file__).resolve().parent / "model"
MODEL_FILE = "model.joblib"
METADATA_FILE = "model.json"


class Flower(BaseModel):
    """One input record. The fields are the model's features, in the order it was trained on."""

    model_config = ConfigDict(allow_inf_nan=False)  # other fields in the record are ignored

    sepal_length: float = Field(gt=0, le=100, description="cm")
    sepal_width: float = Field(gt=0, le=100, description="cm")
    petal_length: float = Field(gt=0, le=100, description="cm")
    petal_width: float = Field(gt=0, le=100, description="cm")


InputModel = Flower
FEATURES = list(Flower.model_fields)

# Set once by setup(); read-only afterwards, so batches may be scored concurrently.
model: Any = None
metadata: dict[str, Any] = {}


def load_model(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The fitted model and its metadata, checked against this code before it serves anything."""
    metadata = json.loads((folder / METADATA_FILE).read_text())
    artifact = folder / MODEL_FILE
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    if digest != metadata["sha256"]:
        raise RuntimeError(f"{artifact} is not the file {METADATA_FILE} describes (sha256 {digest[:12]}...)")
    if metadata["features"] != FEATURES:
        raise RuntimeError(f"the model was trained on {metadata['features']}, the InputModel gives {FEATURES}")
    if metadata["sklearn_version"] != sklearn.__version__:
        # A pickled model may predict differently, or not load, under another scikit-learn.
        raise RuntimeError(
            f"the model was trained with scikit-learn {metadata['sklearn_version']}, this is "
            f"{sklearn.__version__}: retrain it, or pin scikit-learn=={metadata['sklearn_version']}"
        )
    # joblib files are pickles: load only models you built (train.py) or trust like your code.
    return joblib.load(artifact), metadata


def setup(settings: AppSettings) -> None:
    global model, metadata
    model, metadata = load_model(settings.model_path or MODEL_DIR)


def features(messages: list[Message]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """One row per message, one column per feature: the model's input for the whole batch."""
    return np.array([[getattr(m.value, f) for f in FEATURES] for m in messages], dtype=np.float64)


def process_batch(messages: list[Message]) -> list[dict[str, Any]]:
    x = features(messages)
    predictions = model.predict(x)  # one call per batch, not per record
    probabilities = model.predict_proba(x)
    classes = [str(c) for c in model.classes_]
    return [
        {
            "prediction": str(label),
            "probabilities": dict(zip(classes, p.round(6).tolist(), strict=True)),
            "model_version": metadata["version"],
            "input": source(m),
        }
        for m, label, p in zip(messages, predictions, probabilities, strict=True)
    ]


def source(message: Message) -> dict[str, Any]:
    """Where the input was read, so a prediction can be joined back to its record."""
    src = message.source
    if src is None:
        return {"id": message.id}
    return {"id": message.id, "topic": src.topic, "partition": src.partition, "offset": src.offset}
