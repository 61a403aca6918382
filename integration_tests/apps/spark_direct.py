"""The saved Spark model's own predictions for a JSON-lines file, without streampod or the app's code.

    python spark_direct.py MODEL_DIR SAMPLES.jsonl   ->  one JSON list of predictions on stdout

Records that lack a feature or hold a non-number are skipped (the app dead-letters those).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pyspark.ml import PipelineModel
from pyspark.sql import SparkSession


def main(model_dir: Path, samples: Path) -> None:
    features = json.loads((model_dir / "model.json").read_text())["features"]
    rows = []
    for line in samples.read_text().splitlines():
        value = json.loads(line)["value"]
        if all(isinstance(value.get(f), (int, float)) for f in features):
            rows.append([float(value[f]) for f in features])
    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    try:
        model = PipelineModel.load(str(model_dir / "pipeline"))
        frame = spark.createDataFrame(rows, features)
        predictions = [r["prediction"] for r in model.transform(frame).select("prediction").collect()]
    finally:
        spark.stop()
    print(json.dumps(predictions))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
