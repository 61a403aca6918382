"""The Helm chart (helm/streampod) without a cluster: render it and check what it renders.

``helm`` comes from scripts/install-helm.sh (PATH, or the pinned version built once with Go);
Kubernetes objects are checked with kubernetes-validate's strict schemas, custom resources (KEDA,
ServiceMonitor) with scripts/validate-crds.mjs on the npm packages that
scripts/install-crd-validators.sh installs. Used by the chart's tests and the rollout test.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "streampod"
SCRIPTS = REPO / "scripts"
# Oldest Kubernetes the chart supports (native sidecars on by default) and the newest the schemas know.
KUBE_VERSIONS = ("1.29.0", "1.33.0")
CUSTOM_GROUPS = ("keda.sh/", "monitoring.coreos.com/")

Manifest = dict[str, Any]


class RenderError(Exception):
    """helm refused the values (schema or chart check); the message is helm's."""


@functools.cache
def helm_binary() -> str:
    """The helm to use: PATH's v3, or the pinned one built (once) by scripts/install-helm.sh."""
    return _script_output("install-helm.sh", timeout=1200)


@functools.cache
def crd_validators() -> Path:
    return Path(_script_output("install-crd-validators.sh", timeout=600))


def _script_output(name: str, timeout: float) -> str:
    done = subprocess.run(["bash", str(SCRIPTS / name)], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/{name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def _values_args(values: Sequence[Path | Mapping[str, Any]], scratch: Path) -> list[str]:
    args: list[str] = []
    for i, v in enumerate(values):
        if isinstance(v, Path):
            args += ["-f", str(v)]
        else:
            path = scratch / f"values-{i}.yaml"
            path.write_text(yaml.safe_dump(dict(v)))
            args += ["-f", str(path)]
    return args


def helm(*args: str, values: Sequence[Path | Mapping[str, Any]] = (), timeout: float = 120) -> str:
    """Run helm with ``args`` and the values files/dicts; RenderError with helm's stderr on failure."""
    with tempfile.TemporaryDirectory(prefix="streampod-helm-") as tmp:
        cmd = [helm_binary(), *args, *_values_args(values, Path(tmp))]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RenderError(done.stderr.strip() or done.stdout.strip())
    return done.stdout


def render(
    *values: Path | Mapping[str, Any],
    release: str = "stage",
    namespace: str = "pipelines",
    kube_version: str = KUBE_VERSIONS[0],
    tests: bool = True,
) -> list[Manifest]:
    """``helm template`` the chart; the objects it renders (with the test hook when ``tests``)."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", kube_version]
    if not tests:
        args.append("--skip-tests")
    out = helm(*args, values=values)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def lint(*values: Path | Mapping[str, Any], kube_version: str = KUBE_VERSIONS[0]) -> str:
    return helm("lint", "--strict", str(CHART), "--kube-version", kube_version, values=values)


def validate(manifests: Iterable[Manifest], kube_versions: Sequence[str] = KUBE_VERSIONS) -> list[str]:
    """Problems found in strict mode: Kubernetes objects per version, custom resources by their CRD models."""
    from kubernetes_validate import utils as kv  # imported late: it loads its schemas on import

    problems: list[str] = []
    custom: list[Manifest] = []
    for m in manifests:
        if str(m.get("apiVersion", "")).startswith(CUSTOM_GROUPS):
            custom.append(m)
            continue
        for version in kube_versions:
            try:
                kv.validate(m, version, strict=True)
            except kv.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                problems.append(f"{m['kind']}/{m['metadata']['name']} on {version}: {where}: {exc.message}")
            except kv.SchemaNotFoundError:
                problems.append(f"{m['kind']}/{m['metadata']['name']} on {version}: no schema for {m['apiVersion']}")
    if custom:
        problems += validate_custom(custom)
    return problems


def validate_custom(manifests: Sequence[Manifest]) -> list[str]:
    """KEDA and prometheus-operator objects, checked by scripts/validate-crds.mjs (node)."""
    folder = crd_validators()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is needed to check the custom resources (KEDA, ServiceMonitor)")
    # The script must sit beside the packages so that its imports resolve; one copy per process.
    script = folder / f"validate-crds-{os.getpid()}.mjs"
    shutil.copyfile(SCRIPTS / "validate-crds.mjs", script)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(list(manifests), f)
        done = subprocess.run([node, str(script), f.name], capture_output=True, text=True, timeout=120, check=False)
    finally:
        script.unlink(missing_ok=True)
        Path(f.name).unlink(missing_ok=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"validate-crds.mjs failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done.stdout.splitlines()


def by_kind(manifests: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m.get("kind") == kind]


def pod_containers(deployment: Manifest) -> list[Manifest]:
    """The pod's containers in start order: native sidecars (init containers) first, then the main ones."""
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: Manifest) -> dict[str, str]:
    """The container's literal env values (valueFrom entries are left out)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
