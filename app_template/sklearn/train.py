"""Train the model this stage serves and write it to model/: ``python train.py``.

A stand-in for your own training. It uses the iris data set that scikit-learn ships, so it runs
offline, and writes two files:

- ``model.joblib``: the fitted pipeline (scaler and logistic regression);
- ``model.json``: what app.py checks at start: the version, the features in order, the class
  names, the scikit-learn version and the sha256 of model.joblib, plus the held-out accuracy.

Replace the data and the estimator with yours; keep the features in the order of app.FEATURES.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from app import FEATURES, METADATA_FILE, MODEL_DIR, MODEL_FILE

# The data set's column for each of the app's features.
COLUMNS = {
    "sepal_length": "sepal length (cm)",
    "sepal_width": "sepal width (cm)",
    "petal_length": "petal length (cm)",
    "petal_width": "petal width (cm)",
}


def train(out: Path, version: str | None = None, seed: int = 7) -> dict[str, object]:
    iris = load_iris()
    x = iris.data[:, [iris.feature_names.index(COLUMNS[f]) for f in FEATURES]]
    y = np.asarray(iris.target_names)[iris.target]  # the model predicts class names, not numbers
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x_train, y_train)
    out.mkdir(parents=True, exist_ok=True)
    artifact = out / MODEL_FILE
    joblib.dump(model, artifact)
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    metadata: dict[str, object] = {
        "version": version or f"iris-{digest[:12]}",
        "features": FEATURES,
        "classes": [str(c) for c in model.classes_],
        "sklearn_version": sklearn.__version__,
        "sha256": digest,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dataset": "iris (scikit-learn)",
        "test_accuracy": round(float(model.score(x_test, y_test)), 4),
    }
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="the model folder (default: model/)")
    parser.add_argument("--version", help="the model version outputs carry (default: iris-<sha256 prefix>)")
    args = parser.parse_args(argv)
    metadata = train(args.out, args.version)
    print(f"model {metadata['version']} written to {args.out} (held-out accuracy {metadata['test_accuracy']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
