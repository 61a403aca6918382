"""Replaying Dockerfiles without Docker (streampod.dockerfile): the host environment and the RUN step."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

# pip's cache is the machine's (the Dockerfiles turn it off to keep layers small; here it saves minutes).
SKIP_ENV = ("PIP_NO_CACHE_DIR",)


def host_env() -> dict[str, str]:
    """What a build needs from this machine to reach the registry: home, caches, pip and TLS settings."""
    keep = re.compile(r"HOME|LANG|LC_ALL|TMPDIR|XDG_CACHE_HOME|PIP_\w+|\w*_PROXY|SSL_CERT_\w+|\w*CA_BUNDLE", re.I)
    return {k: v for k, v in os.environ.items() if keep.fullmatch(k)} | {"PATH": os.defpath}


def run(command: str, cwd: Path, env: dict[str, str]) -> None:
    """One RUN line, in bash, with the host's build environment under the image's ENV."""
    path = env["PATH"].replace("$PATH", os.defpath)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env={**host_env(), **env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"RUN {command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
