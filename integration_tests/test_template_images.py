"""The templates' Dockerfiles, replayed without Docker on top of the replayed app runtime image.

No Docker engine runs here, so :mod:`streampod.dockerfile` replays ``app_template/Dockerfile`` (the
runtime image) into a scratch root, then each generated project's Dockerfile on top of it: the same
``pip install`` with the runtime's versions as constraints, ``/app`` replaced by the project's code and
model. The runtime's entrypoint then starts with both images' ENV, and the container scores the
project's samples from the baked-in model (STREAMPOD_MODEL_PATH=/app/model) in front of a real output
writer. Not proven: the base images, ``COPY --from`` (the PySpark image's Java 17 from the Temurin image:
this machine's Java runs it instead), the non-root user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from image_support import SKIP_ENV, host_env, run

from streampod.dockerfile import LocalImage, parse, replay
from streampod.ports import free_port
from streampod.stage import Component

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> LocalImage:
    root = tmp_path_factory.mktemp("runtime-image")
    return replay(
        parse(REPO / "app_template" / "Dockerfile"), REPO, root, python=sys.executable, run=run, skip_env=SKIP_ENV
    )


def post(url: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    messages = [
        {"id": f"m{i}", "key": r["key"], "value": r["value"], "encoding": "json", "headers": {}}
        for i, r in enumerate(records)
    ]
    req = urllib.request.Request(
        url, orjson.dumps({"messages": messages}), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        results: list[dict[str, Any]] = orjson.loads(resp.read())["results"]
        return results


# In this order on the one replayed root: each template's install adds to the same virtual environment.
@pytest.mark.parametrize("template", ["python", "sklearn", pytest.param("pyspark", marks=pytest.mark.pyspark)])
def test_the_template_image_serves_its_samples(template: str, runtime: LocalImage, tmp_path: Path) -> None:
    if template == "pyspark":
        pytest.importorskip("pyspark", reason="the pyspark extra is not installed (CI installs it with [dev])")
    new = subprocess.run(
        [sys.executable, "-m", "streampod", "new", "img", "--template", template, "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert new.returncode == 0, new.stdout + new.stderr
    project = tmp_path / "img"
    image = replay(
        parse(project / "Dockerfile"), project, runtime.root, python=sys.executable, run=run, skip_env=SKIP_ENV
    )
    app_dir = runtime.root / "app"
    assert (app_dir / "app.py").read_bytes() == (project / "app.py").read_bytes()
    assert not (app_dir / "samples.jsonl").exists(), "the runtime image's plain template is replaced"
    assert (app_dir / "model").is_dir() == (template != "python")

    base_env = runtime.env(os.defpath)
    env = {**host_env(), **base_env, **image.env(base_env["PATH"])}
    # The Java that COPY --from would bring is not here: this machine's Java stands in for it.
    env.pop("JAVA_HOME", None)
    writer_port, writer_ops, app_port, app_ops = free_port(), free_port(), free_port(), free_port()
    writer = Component(
        "output-writer",
        [sys.executable, "-m", "streampod", "output-writer"],
        {
            **os.environ,
            "STREAMPOD_OUTPUT_KIND": "file",
            "STREAMPOD_OUTPUT_FILE": str(tmp_path / "out.jsonl"),
            "STREAMPOD_WRITER_PORT": str(writer_port),
            "STREAMPOD_OPS_PORT": str(writer_ops),
            "STREAMPOD_OPS_HOST": "127.0.0.1",
        },
        writer_ops,
        tmp_path / "writer.log",
    )
    app = Component(
        "app",
        runtime.argv(os.defpath),
        {
            **env,
            "STREAMPOD_APP_PORT": str(app_port),
            "STREAMPOD_OPS_PORT": str(app_ops),
            "STREAMPOD_OPS_HOST": "127.0.0.1",
            "STREAMPOD_OUTPUT_URL": f"http://127.0.0.1:{writer_port}",
        },
        app_ops,
        tmp_path / "app.log",
    )
    writer.start()
    app.start()
    try:
        writer.wait_until("/healthz", 60)
        app.wait_until("/healthz", 240)
        samples = [orjson.loads(line) for line in (project / "samples.jsonl").read_bytes().splitlines() if line]
        results = post(f"http://127.0.0.1:{app_port}/v1/messages", samples)
        assert [r["status"] for r in results] == ["ok"] * 10 + ["reject"] * 2, results
    finally:
        for c in (app, writer):
            c.signal(15)
            if c.wait(30) is None:
                c.signal(9)
                c.wait(5)
            c.close()
    assert app.proc is not None and app.proc.returncode == 0, app.log_tail()
