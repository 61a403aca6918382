"""The local SparkSession the app scores in: one JVM inside the app container, sized for a pod.

Spark runs in local mode (driver and executor in one JVM, started by pyspark; Spark 4 needs Java 17 or 21).
What the settings below are for:

- ``spark.driver.memory``: the JVM heap. Keep the container's memory limit (values.yaml:
  app.resources.limits.memory) at least this plus about 600 MiB for Python and the JVM itself.
- one core, one partition, one shuffle partition: a batch of a few hundred records is one small
  task; more partitions only add scheduling time to every batch.
- no web UI, and the driver bound to 127.0.0.1: nothing listens beyond the pod's loopback.
- JVM options for a short start and a small heap (below).
- scratch space in the temporary directory (Spark's default spark.local.dir is /tmp, which the
  chart mounts writable; the root filesystem is read-only), and no progress bar in the log.

Change DEFAULTS, or pass overrides: ``local_session(**{"spark.driver.memory": "2g"})``.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

DEFAULTS: dict[str, str] = {
    "spark.master": "local[1]",
    "spark.app.name": "streampod-app",
    "spark.driver.memory": "1g",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "1",
    "spark.default.parallelism": "1",
    "spark.sql.session.timeZone": "UTC",
    "spark.log.level": "WARN",
    # A small heap on one or two cores: the serial collector; and the JIT's quick tier only, which
    # starts faster and serves small batches as fast (measured: docs/templates.md in streampod). For a
    # model that computes for long per batch, drop TieredStopAtLevel to get the optimising tier back.
    "spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
}


def local_session(**overrides: str) -> SparkSession:
    """The process's SparkSession, started on first use (the JVM takes seconds: call it in setup())."""
    # Spark otherwise looks up the host name and warns when it resolves to a loopback address.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    conf = {
        **DEFAULTS,
        "spark.sql.warehouse.dir": str(Path(tempfile.gettempdir(), "spark-warehouse")),
        **overrides,
    }
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    # Stop the JVM cleanly when the app container exits (once, however often this is called).
    atexit.unregister(session.stop)
    atexit.register(session.stop)
    return session
