"""``streampod release`` steps with a recording ``helm``/``kubectl`` first on PATH: the exact argv the
pipeline runs; and ci/scripts run as the pipeline runs them (helm push recorded, not sent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streampod import chart

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """helm and kubectl that log their argv as JSON lines; `helm get values` answers blue active."""
    log, bin_dir = tmp_path / "calls.jsonl", tmp_path / "bin"
    bin_dir.mkdir()
    values = json.dumps({"blueGreen": {"enabled": True, "activeColor": "blue"}})
    for tool in ("helm", "kubectl"):
        (bin_dir / tool).write_text(
            f"#!{sys.executable}\nimport json, sys\n"
            f"open({str(log)!r}, 'a').write(json.dumps([{tool!r}, *sys.argv[1:]]) + '\\n')\n"
            f"if sys.argv[1:3] == ['get', 'values']: print({values!r})\n"
        )
        (bin_dir / tool).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, log


def _release(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streampod", "release", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_candidate_step_runs_exactly_this(recorder: tuple[dict[str, str], Path]) -> None:
    env, log = recorder
    target = ["--release", "scorer", "--namespace", "pipelines", "--timeout", "10m"]
    done = _release(
        env,
        "candidate",
        *target,
        "--chart",
        "oci://acr.example/helm/streampod",
        "--chart-version",
        "0.1.0-build.7",
        "--app-tag",
        "1.10",
        "--active",
        "blue",
    )
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [
        ["helm", "get", "values", "scorer", "--namespace", "pipelines", "--all", "--output", "json"],
        [
            "helm",
            "upgrade",
            "scorer",
            "oci://acr.example/helm/streampod",
            "--namespace",
            "pipelines",
            "--reuse-values",
            "--version",
            "0.1.0-build.7",
            "--set",
            "blueGreen.activeColor=blue",
            "--set",
            "blueGreen.inactive=candidate",
            "--set-string",
            "blueGreen.green.appTag=1.10",
            "--atomic",
            "--wait",
            "--timeout",
            "10m",
        ],
        [
            "kubectl",
            "rollout",
            "status",
            "deployment",
            "--namespace",
            "pipelines",
            "--selector",
            "app.kubernetes.io/instance=scorer",
            "--timeout",
            "10m",
        ],
    ]
    assert "+ helm upgrade scorer" in done.stderr  # each command is echoed into the pipeline's log


def test_a_changed_active_colour_or_a_release_without_blue_green_is_refused(
    recorder: tuple[dict[str, str], Path],
) -> None:
    env, _ = recorder
    target = ["--release", "scorer", "--namespace", "pipelines", "--chart", "c"]
    done = _release(env, "candidate", *target, "--app-tag", "2", "--active", "green")
    assert done.returncode == 1 and "the plan said green is active, but the release now has blue" in done.stderr
    assert _release(env, "promote", "--release", "r", "--namespace", "n", "--to", "green").returncode == 2


def test_ci_scripts_package_the_chart_and_push_it_as_oci(recorder: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, log = recorder
    real_helm = chart.helm_binary()
    # The recorder's helm logs; `helm package` is passed on to the real helm so the package exists.
    wrapper = Path(env["PATH"].split(os.pathsep)[0]) / "helm"
    wrapper.write_text(
        wrapper.read_text() + f"if sys.argv[1] == 'package':\n"
        f"    import subprocess; sys.exit(subprocess.call([{real_helm!r}, *sys.argv[1:]]))\n"
        f"if sys.argv[1] == 'push':\n"
        f"    import tarfile; print(tarfile.open(sys.argv[2]).getnames()[0])\n"
    )
    done = subprocess.run(
        [str(REPO / "ci" / "scripts" / "push-chart.sh")],
        env={**env, "CHART_VERSION": "0.1.0-build.42", "APP_VERSION": "42", "ACR_LOGIN_SERVER": "acr.example"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    push = [json.loads(line) for line in log.read_text().splitlines()][-1]
    assert push[:2] == ["helm", "push"] and push[2].endswith("/streampod-0.1.0-build.42.tgz")
    assert push[3] == "oci://acr.example/helm"
    assert "streampod/Chart.yaml" in done.stdout  # a real chart archive, listed by the stand-in's push


def test_ci_lint_script(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(REPO / "ci" / "scripts" / "lint.sh")],
        env={**os.environ, "STREAMPOD_VENV": sys.prefix},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lint: hadolint and helm lint passed" in done.stdout
