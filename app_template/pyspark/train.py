"""Train the model this stage serves and write it to model/: ``python train.py``.

A stand-in for your own training. It uses the diabetes data set that scikit-learn ships (so it
runs offline; scikit-learn is needed here only for the data) and writes:

- ``pipeline/``: the Spark ML PipelineModel (VectorAssembler and a random forest regressor);
- ``model.json``: what app.py checks at start: the version and the features in order, plus the
  Spark version and the held-out RMSE.

Replace the data and the stages with yours; keep the features in the order of app.FEATURES.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyspark
from pyspark.ml import Pipeline
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import RandomForestRegressor
from sklearn.datasets import load_diabetes

from app import FEATURES, METADATA_FILE, MODEL_DIR, PIPELINE_DIR
from spark_session import local_session

# The data set's column for each of the app's features.
COLUMNS = {
    "age": "age",
    "sex": "sex",
    "bmi": "bmi",
    "bp": "bp",
    "tc": "s1",
    "ldl": "s2",
    "hdl": "s3",
    "tch": "s4",
    "ltg": "s5",
    "glu": "s6",
}
LABEL = "progression"  # disease progression one year after the measurements


def train(out: Path, version: str | None = None, seed: int = 7) -> dict[str, object]:
    data = load_diabetes(scaled=False)
    columns = [data.feature_names.index(COLUMNS[f]) for f in FEATURES]
    rows = [(*(float(v) for v in x[columns]), float(y)) for x, y in zip(data.data, data.target, strict=True)]
    spark = local_session()
    frame = spark.createDataFrame(rows, [*FEATURES, LABEL])
    training, held_out = frame.randomSplit([0.8, 0.2], seed=seed)
    pipeline = Pipeline(
        stages=[
            VectorAssembler(inputCols=FEATURES, outputCol="features"),
            RandomForestRegressor(labelCol=LABEL, numTrees=30, maxDepth=5, seed=seed),
        ]
    )
    model = pipeline.fit(training)
    rmse = RegressionEvaluator(labelCol=LABEL, metricName="rmse").evaluate(model.transform(held_out))
    out.mkdir(parents=True, exist_ok=True)
    model.write().overwrite().save(str(out / PIPELINE_DIR))
    trained_at = time.gmtime()
    metadata: dict[str, object] = {
        "version": version or time.strftime("diabetes-rf-%Y%m%d%H%M%S", trained_at),
        "features": FEATURES,
        "spark_version": pyspark.__version__,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", trained_at),
        "dataset": "diabetes (scikit-learn, unscaled)",
        "test_rmse": round(rmse, 3),
    }
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="the model folder (default: model/)")
    parser.add_argument("--version", help="the model version outputs carry (default: diabetes-rf-<UTC time>)")
    args = parser.parse_args(argv)
    metadata = train(args.out, args.version)
    print(f"model {metadata['version']} written to {args.out} (held-out RMSE {metadata['test_rmse']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
