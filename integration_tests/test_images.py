"""The three images' build steps, replayed without Docker, and their entrypoints started.

No Docker engine runs here, so each Dockerfile is replayed by :mod:`streampod.dockerfile`: its COPY
instructions from the repository (the build context) into a scratch root, its RUN lines (the same
``pip install`` lines) in a fresh virtual environment, then its exec-form ENTRYPOINT with its ENV and
a minimal environment, until the container answers ``/healthz`` and drains on SIGTERM. Not proven:
the base image itself, the non-root user, the read-only root filesystem (the chart sets that; the
rollout test runs the processes as this machine's user).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from image_support import SKIP_ENV
from image_support import host_env as _host_env
from image_support import run as _run

from streampod.dockerfile import LocalImage, parse, replay
from streampod.ports import free_port
from streampod.stage import Component

ROOT = Path(__file__).resolve().parents[1]
IMAGES = {
    "input-reader": ROOT / "input_reader" / "Dockerfile",
    "output-writer": ROOT / "output_writer" / "Dockerfile",
    "app": ROOT / "app_template" / "Dockerfile",
}


def _build_key(dockerfile: Path) -> str:
    """Images whose build stages are the same (after ARG defaults) share one replayed root."""
    df = parse(dockerfile)
    stage = df.stage("build")
    args = df.stage_args(stage)
    text = "\n".join(f"{i.keyword} {df.substitute(i.args, args)}" for i in stage.instructions)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LocalImage]:
    roots: dict[str, Path] = {}
    built: dict[str, LocalImage] = {}
    for name, dockerfile in IMAGES.items():
        key = _build_key(dockerfile)
        df = parse(dockerfile)
        if key in roots:
            # Same build stage: reuse the venv, replay only this image's own final stage on top.
            built[name] = replay(df, ROOT, roots[key], python=sys.executable, run=_skip_build, skip_env=SKIP_ENV)
            continue
        roots[key] = tmp_path_factory.mktemp(f"image-{name}")
        built[name] = replay(df, ROOT, roots[key], python=sys.executable, run=_run, skip_env=SKIP_ENV)
    return built


def _skip_build(command: str, cwd: Path, env: dict[str, str]) -> None:
    """RUN lines of a build stage already replayed for another image with the same lines."""


def _settings(name: str, tmp: Path) -> dict[str, str]:
    """The least each container needs to start (a broker nobody listens on: /healthz does not need it)."""
    dead = f"127.0.0.1:{free_port()}"
    if name == "input-reader":
        return {
            "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS": dead,
            "STREAMPOD_INPUT_TOPICS": "images-in",
            "STREAMPOD_CONSUMER_GROUP": "images",
            "STREAMPOD_APP_URL": f"http://127.0.0.1:{free_port()}",
        }
    if name == "output-writer":
        return {
            "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS": dead,
            "STREAMPOD_OUTPUT_TOPIC": "images-out",
            "STREAMPOD_WRITER_PORT": str(free_port()),
        }
    return {"STREAMPOD_APP_PORT": str(free_port()), "STREAMPOD_OUTPUT_URL": f"http://127.0.0.1:{free_port()}"}


def test_dependencies_of_each_image_are_consistent(images: dict[str, LocalImage]) -> None:
    for name, image in images.items():
        pip = image.root / "opt" / "venv" / "bin" / "pip"
        done = subprocess.run([str(pip), "check"], capture_output=True, text=True, timeout=120, env=_host_env())
        assert done.returncode == 0, f"{name}: pip check: {done.stdout}{done.stderr}"


def test_only_the_extras_each_container_needs(images: dict[str, LocalImage]) -> None:
    def has(image: LocalImage, module: str) -> bool:
        python = image.root / "opt" / "venv" / "bin" / "python"
        probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
        return subprocess.run([str(python), "-c", probe], env=_host_env(), timeout=60).returncode == 0

    for name in ("input-reader", "output-writer"):
        assert has(images[name], "confluent_kafka") and has(images[name], "azure.eventhub"), name
    assert not has(images["app"], "confluent_kafka"), "the app image carries a broker client"
    assert not has(images["app"], "azure.eventhub"), "the app image carries a broker client"
    assert has(images["app"], "jsonschema")


@pytest.mark.parametrize("name", list(IMAGES))
def test_entrypoint_answers_healthz_and_drains_on_sigterm(
    name: str, images: dict[str, LocalImage], tmp_path: Path
) -> None:
    image = images[name]
    ops = free_port()
    env = {
        **_host_env(),
        **image.env(os.defpath),
        "STREAMPOD_OPS_HOST": "127.0.0.1",
        "STREAMPOD_OPS_PORT": str(ops),
        **_settings(name, tmp_path),
    }
    if name == "app":
        assert Path(env["STREAMPOD_APP_MODULE"]).is_file(), "the image's STREAMPOD_APP_MODULE names no file"
    c = Component(name, image.argv(os.defpath), env, ops, tmp_path / f"{name}.log")
    c.start()
    try:
        c.wait_until("/healthz", timeout=60)
        c.signal(signal.SIGTERM)
        assert c.wait(30) == 0, c.log_tail()
    finally:
        c.signal(signal.SIGKILL)
        c.wait(5)
        c.close()
