"""The Quix Streams variant: the shared transform as a StreamingDataFrame, Kafka → Kafka.

Run as a script by the Python of Quix Streams' own virtual environment (see ``quixenv``), where
streampod is not installed: it loads ``transform.py`` beside it by path. Quix Streams' defaults are
kept where a user would keep them (JSON serdes on orjson, at-least-once, its commit interval); the
topics exist already, so it is told not to create any.

``<venv>/bin/python quix_app.py --bootstrap H:P --input T --output T --group G --state-dir D``
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _load_transform() -> Any:
    spec = importlib.util.spec_from_file_location("streampod_bench_transform", HERE / "transform.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {HERE / 'transform.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    # Run as a script, this folder is sys.path[0]; its module names must not shadow anyone's.
    if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
        sys.path.pop(0)
    from quixstreams import Application  # type: ignore[import-not-found,unused-ignore]

    p = argparse.ArgumentParser(prog="quix_app.py", description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--state-dir", required=True)
    a = p.parse_args(argv)
    enrich = _load_transform().enrich
    app = Application(
        broker_address=a.bootstrap,
        consumer_group=a.group,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        auto_create_topics=False,
        use_changelog_topics=False,
        state_dir=a.state_dir,
        loglevel="WARNING",
    )
    topic_in = app.topic(a.input, value_deserializer="json")
    topic_out = app.topic(a.output, value_serializer="json")
    sdf = app.dataframe(topic_in)
    sdf = sdf.apply(enrich)
    sdf.to_topic(topic_out)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
