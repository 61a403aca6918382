"""Run what the Helm chart renders as processes of this machine, and roll it as Kubernetes would.

:class:`LocalCluster` takes rendered manifests (``streampod.chart.render``) and, for each Deployment,
starts its pods: every container a process started with the image's entrypoint and ENV (read from
the container's Dockerfile) and exactly the env the chart gives it. ``apply`` with a new rendering
does what the Deployment controller does with ``maxSurge: 1, maxUnavailable: 0``: a Deployment whose
pod template changed gets a new pod, ready before an old one is stopped; one whose replicas changed
is scaled. Pods start and stop like the kubelet runs them: native sidecars (init containers with
``restartPolicy: Always``) in order, each once its startup probe passes, then the main containers;
on termination SIGTERM to the main containers first, then the sidecars in reverse order, within
``terminationGracePeriodSeconds``.

What a pod's network namespace becomes on one machine: every port the pod uses (container ports and
the ``STREAMPOD_*_PORT`` settings) is mapped to a free local port, consistently inside the pod and
in its ``http://127.0.0.1:PORT`` URLs, and the ops endpoints bind to 127.0.0.1 instead of 0.0.0.0.
Secret volumes are written to a folder of the pod and paths under their mount points remapped. Any
other env source or volume kind is refused rather than approximated.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streampod.chart import REPO, Manifest, pod_containers
from streampod.dockerfile import parse
from streampod.ports import free_port
from streampod.stage import Component

#: The Dockerfile of each container of the chart's pods.
DOCKERFILES = {
    "input-reader": REPO / "input_reader" / "Dockerfile",
    "app": REPO / "app_template" / "Dockerfile",
    "output-writer": REPO / "output_writer" / "Dockerfile",
}
_PORT_VAR = re.compile(r"^STREAMPOD_\w*PORT$")
_LOCAL_URL = re.compile(r"^(https?://(?:127\.0\.0\.1|localhost)):(\d+)")


class TranslationError(Exception):
    """The rendered pod uses something this local runner does not reproduce."""


@dataclass
class LocalContainer:
    name: str
    sidecar: bool
    component: Component
    startup: str | None  # probe paths on the container's ops port
    readiness: str | None


@dataclass
class LocalPod:
    """One pod of a Deployment, its containers as processes."""

    name: str
    template: Manifest
    containers: list[LocalContainer]
    grace_s: float
    startup_budget_s: float

    def start(self) -> None:
        for c in self.containers:
            c.component.start()
            if c.startup:
                c.component.wait_until(c.startup, self.startup_budget_s)

    def ready(self) -> bool:
        for c in self.containers:
            if not c.component.alive():
                return False
            if c.readiness:
                try:
                    status, _ = c.component.get(c.readiness)
                except OSError:
                    return False
                if status != 200:
                    return False
        return True

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"pod {self.name} not ready within {timeout} s:\n{self.logs()}")

    def stop(self) -> dict[str, int | None]:
        """Main containers first, then the sidecars in reverse start order, within the grace period."""
        deadline = time.monotonic() + self.grace_s
        codes: dict[str, int | None] = {}
        mains = [c for c in self.containers if not c.sidecar]
        sidecars = [c for c in reversed(self.containers) if c.sidecar]
        for group in (mains, *[[s] for s in sidecars]):
            for c in group:
                c.component.signal(signal.SIGTERM)
            for c in group:
                codes[c.name] = c.component.wait(max(0.1, deadline - time.monotonic()))
        for c in self.containers:
            if c.component.alive():
                c.component.signal(signal.SIGKILL)
                c.component.wait(5)
            c.component.close()
        return codes

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {self.name}/{c.name} ---\n{c.component.log_tail(lines)}" for c in self.containers)


@dataclass
class LocalCluster:
    """The Deployments of one release, run locally; ``apply`` a rendering to create or roll them."""

    workdir: Path
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # Secrets not in the rendering
    startup_budget_s: float = 90.0
    pods: dict[str, list[LocalPod]] = field(default_factory=dict)  # by Deployment name
    templates: dict[str, Manifest] = field(default_factory=dict)
    stopped: list[tuple[str, dict[str, int | None]]] = field(default_factory=list)
    _serial: int = 0

    def apply(self, manifests: Sequence[Manifest], ready_timeout: float = 90.0) -> None:
        rendered_secrets = {
            m["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in m.get("data", {}).items()}
            for m in manifests
            if m.get("kind") == "Secret"
        }
        secrets = {**self.secrets, **rendered_secrets}
        wanted = {m["metadata"]["name"]: m for m in manifests if m.get("kind") == "Deployment"}
        for name in list(self.pods):
            if name not in wanted:
                for pod in self.pods.pop(name):
                    self._stop(pod)
        # Like the Deployment controller, every Deployment rolls at the same time: surge one new pod
        # each, wait until they are ready, then stop one old pod each; repeat.
        old: dict[str, list[LocalPod]] = {}
        for name, d in wanted.items():
            template = d["spec"]["template"]
            current = self.pods.setdefault(name, [])
            if self.templates.get(name) != template:
                old[name] = current
                self.pods[name] = []
            self.templates[name] = copy.deepcopy(template)
        while True:
            surged: list[LocalPod] = []
            for name, d in wanted.items():
                replicas, new, leftovers = int(d["spec"].get("replicas", 1)), self.pods[name], old.get(name, [])
                if len(new) < replicas and len(new) + len(leftovers) < replicas + 1:  # maxSurge: 1
                    pod = self.make_pod(name, d, secrets)
                    new.append(pod)
                    surged.append(pod)
            for pod in surged:
                pod.start()
            for pod in surged:
                pod.wait_ready(ready_timeout)
            progressed = bool(surged)
            for name, d in wanted.items():
                replicas, new, leftovers = int(d["spec"].get("replicas", 1)), self.pods[name], old.get(name, [])
                # maxUnavailable: 0 -- an old pod stops only once its replacement is ready.
                if leftovers and len(new) + len(leftovers) > replicas:
                    self._stop(leftovers.pop(0))
                    progressed = True
                while len(new) > replicas:
                    self._stop(new.pop())
                    progressed = True
            if not progressed:
                return

    def _stop(self, pod: LocalPod) -> None:
        self.stopped.append((pod.name, pod.stop()))

    def stop(self) -> None:
        for pods in self.pods.values():
            for pod in pods:
                self._stop(pod)
        self.pods.clear()
        self.templates.clear()

    def logs(self) -> str:
        return "\n".join(pod.logs() for pods in self.pods.values() for pod in pods)

    def make_pod(self, deployment: str, d: Manifest, secrets: Mapping[str, Mapping[str, str]]) -> LocalPod:
        """A new (not started) pod of Deployment ``d``; ``secrets``: Secret name → key → value."""
        self._serial += 1
        name = f"{deployment}-{self._serial:04d}"
        folder = self.workdir / name
        folder.mkdir(parents=True)
        spec = d["spec"]["template"]["spec"]
        mounts = _volumes(spec, folder, secrets)
        ports = _port_map(pod_containers(d))
        containers = []
        for c in pod_containers(d):
            sidecar = c.get("restartPolicy") == "Always"
            if c in spec.get("initContainers", []) and not sidecar:
                raise TranslationError(f"{name}: init container {c['name']} is not a sidecar")
            env = _container_env(c, name, ports, mounts)
            named = {p["name"]: ports[p["containerPort"]] for p in c.get("ports", [])}
            startup, readiness = _probe(c, "startupProbe", named, ports), _probe(c, "readinessProbe", named, ports)
            ops = (startup or readiness or (None, 0))[1]
            component = Component(c["name"], _argv(c), env, ops, folder / f"{c['name']}.log")
            containers.append(
                LocalContainer(c["name"], sidecar, component, startup and startup[0], readiness and readiness[0])
            )
        grace = float(spec.get("terminationGracePeriodSeconds", 30))
        return LocalPod(name, d["spec"]["template"], containers, grace, self.startup_budget_s)


def _port_map(containers: Sequence[Manifest]) -> dict[int, int]:
    """Every port the pod uses → a free local port."""
    used: set[int] = set()
    for c in containers:
        used |= {int(p["containerPort"]) for p in c.get("ports", [])}
        for e in c.get("env", []):
            value = str(e.get("value", ""))
            if _PORT_VAR.match(e["name"]) and value.isdigit():
                used.add(int(value))
            if m := _LOCAL_URL.match(value):
                used.add(int(m.group(2)))
    return {port: free_port() for port in sorted(used)}


def _volumes(spec: Manifest, folder: Path, secrets: Mapping[str, Mapping[str, str]]) -> dict[str, Path | None]:
    """Volume name → local folder (Secret volumes, written out) or None (emptyDir: the host's /tmp)."""
    out: dict[str, Path | None] = {}
    for v in spec.get("volumes", []):
        if "emptyDir" in v:
            out[v["name"]] = None
        elif "secret" in v:
            secret = v["secret"]["secretName"]
            if secret not in secrets:
                raise TranslationError(f"Secret {secret} is neither rendered nor given to LocalCluster(secrets=...)")
            target = folder / "volumes" / v["name"]
            target.mkdir(parents=True)
            items = v["secret"].get("items") or [{"key": k, "path": k} for k in secrets[secret]]
            for item in items:
                (target / item["path"]).write_text(secrets[secret][item["key"]])
            out[v["name"]] = target
        else:
            raise TranslationError(f"volume {v['name']}: only emptyDir and secret volumes run locally")
    return out


def _container_env(
    c: Manifest, pod_name: str, ports: Mapping[int, int], volumes: Mapping[str, Path | None]
) -> dict[str, str]:
    mounts = {m["mountPath"]: volumes[m["name"]] for m in c.get("volumeMounts", [])}
    env: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            value = str(e["value"])
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            value = pod_name
        else:
            raise TranslationError(f"{c['name']}: env {e['name']} comes from {json.dumps(e.get('valueFrom'))}")
        if _PORT_VAR.match(e["name"]) and value.isdigit():
            value = str(ports[int(value)])
        if m := _LOCAL_URL.match(value):
            value = f"{m.group(1)}:{ports[int(m.group(2))]}{value[m.end() :]}"
        for mount, local in mounts.items():
            if local is not None and value.startswith(mount + "/"):
                value = str(local) + value[len(mount) :]
        env[e["name"]] = value
    if c.get("envFrom"):
        raise TranslationError(f"{c['name']}: envFrom is not reproduced locally")
    env.setdefault("STREAMPOD_OPS_HOST", "127.0.0.1")  # the pod's 0.0.0.0 is this machine's loopback
    image = parse(DOCKERFILES[c["name"]])
    image_env = {k: v for k, v in image.env(image.final).items() if k != "PATH"}
    # The machine's environment (PATH, HOME...) without any streampod setting, then image, then chart.
    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPOD_")}
    return {**base, **image_env, **env}


def _argv(c: Manifest) -> list[str]:
    if c.get("command") or c.get("args"):
        raise TranslationError(f"{c['name']}: command/args overrides are not reproduced locally")
    entry = parse(DOCKERFILES[c["name"]]).entrypoint()
    if entry[0] != "streampod":
        raise TranslationError(f"{c['name']}: entrypoint {entry} is not the streampod command")
    return [sys.executable, "-m", "streampod", *entry[1:]]


def _probe(c: Manifest, kind: str, named_ports: Mapping[str, int], ports: Mapping[int, int]) -> tuple[str, int] | None:
    probe: dict[str, Any] | None = c.get(kind)
    if not probe:
        return None
    if "httpGet" not in probe:
        raise TranslationError(f"{c['name']}: only httpGet probes are reproduced locally")
    port = probe["httpGet"]["port"]
    local = named_ports[port] if isinstance(port, str) else ports[int(port)]
    return str(probe["httpGet"]["path"]), local
