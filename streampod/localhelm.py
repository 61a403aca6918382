"""``helm`` and ``kubectl`` stand-ins for running the release steps without a cluster.

The release steps (streampod.release) run ``helm`` and ``kubectl`` from PATH. In the tests,
:meth:`LocalHelm.shims` writes two executables named ``helm`` and ``kubectl`` that forward their
argv to a :class:`LocalHelm` in the test process, which does what the real tools would do to a
cluster, with the parts this machine has:

- ``helm upgrade [--install] R CHART [--reuse-values] [-f F] [--set/--set-string K=V] [--timeout T]``:
  the release's values computed by the real helm (a values-only chart rendered with the previous
  values under ``--reuse-values``, then the new ones, so helm's own merging and --set parsing apply),
  the chart rendered by the real ``helm template`` (values.schema.json and the chart's checks
  included), and the rendering applied to a :class:`~streampod.localpod.LocalCluster`, which rolls
  the Deployments as the controller would and waits until the new pods are ready within the timeout.
- ``helm get values R [--all] --output json``: the release's values (``--all``: with the chart's defaults).
- ``kubectl rollout status deployment --selector k=v[,k=v] --timeout T``: every matching Deployment
  has its replicas running and ready.

Not reproduced: ``--atomic``'s rollback of a failed upgrade (a failed apply answers exit code 1), an
oci:// chart (a local chart folder only), and anything else; an unknown command answers exit code 64.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streampod import chart
from streampod.localpod import LocalCluster

#: The URL of the LocalHelm that the stand-ins forward to.
ENV_URL = "STREAMPOD_LOCALHELM_URL"
EXIT_UNSUPPORTED = 64
_VALUE_FLAGS = {"-f", "--values", "--set", "--set-string", "--set-json"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def duration_s(text: str) -> float:
    """A Go duration as helm and kubectl take it ("10m", "1m30s", "90s") in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass
class Result:
    code: int = 0
    stdout: str = ""
    stderr: str = ""


@dataclass
class Release:
    namespace: str
    values: dict[str, Any]
    manifests: list[chart.Manifest]
    revision: int = 1


@dataclass
class LocalHelm:
    """Releases of one local "cluster"; ``calls`` records every argv it was asked to run."""

    cluster: LocalCluster
    releases: dict[str, Release] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, argv: Sequence[str], cwd: str | None = None) -> Result:
        """Do what ``argv`` would do; relative paths in it are relative to ``cwd`` (the caller's)."""
        with self._lock:
            self.calls.append(list(argv))
            try:
                if argv[:2] == ["helm", "upgrade"]:
                    return self._upgrade(list(argv[2:]), Path(cwd or os.getcwd()))
                if argv[:3] == ["helm", "get", "values"]:
                    return self._get_values(list(argv[3:]))
                if argv[:3] == ["kubectl", "rollout", "status"]:
                    return self._rollout_status(list(argv[3:]))
            except Exception as exc:  # a stand-in reports what went wrong as the tool would: exit code 1
                return Result(1, stderr=f"Error: {type(exc).__name__}: {exc}\n")
            return Result(EXIT_UNSUPPORTED, stderr=f"localhelm: not reproduced: {' '.join(argv)}\n")

    # -- helm -----------------------------------------------------------------------------------

    def _upgrade(self, args: list[str], cwd: Path) -> Result:
        positional, flags, values = _split(args)
        release, chart_dir = positional[0], str(cwd / positional[1])
        values = [(f, str(cwd / v) if f in ("-f", "--values") else v) for f, v in values]
        namespace = flags.get("--namespace", flags.get("-n", "default"))
        current = self.releases.get(release)
        if current is None and "--install" not in flags:
            return Result(1, stderr=f'Error: UPGRADE FAILED: "{release}" has no deployed releases\n')
        if not Path(chart_dir).is_dir():
            return Result(EXIT_UNSUPPORTED, stderr=f"localhelm: only a local chart folder, not {chart_dir}\n")
        base = current.values if current is not None and "--reuse-values" in flags else {}
        user = _merged_values(base, values)
        rendered = chart.helm(
            "template", release, chart_dir, "--namespace", namespace, "--skip-tests", values=[user], timeout=120
        )
        manifests = [doc for doc in yaml.safe_load_all(rendered) if doc]
        timeout = duration_s(flags.get("--timeout", "5m"))
        self.cluster.apply(manifests, ready_timeout=timeout)
        revision = current.revision + 1 if current is not None else 1
        self.releases[release] = Release(namespace, user, manifests, revision)
        verb = "upgraded" if current is not None else "installed"
        return Result(0, stdout=f'Release "{release}" has been {verb}. Happy Helming!\nREVISION: {revision}\n')

    def _get_values(self, args: list[str]) -> Result:
        positional, flags, _ = _split(args)
        release = self.releases.get(positional[0])
        if release is None:
            return Result(1, stderr="Error: release: not found\n")
        values = release.values
        if "--all" in flags or "-a" in flags:
            values = _merged_values(yaml.safe_load((chart.CHART / "values.yaml").read_text()), [("-f", values)])
        return Result(0, stdout=json.dumps(values) + "\n")

    # -- kubectl --------------------------------------------------------------------------------

    def _rollout_status(self, args: list[str]) -> Result:
        positional, flags, _ = _split(args)
        if positional != ["deployment"]:
            return Result(EXIT_UNSUPPORTED, stderr="localhelm: only `rollout status deployment --selector ...`\n")
        wanted = dict(pair.split("=", 1) for pair in flags.get("--selector", flags.get("-l", "")).split(",") if pair)
        names = [
            (d["metadata"]["name"], int(d["spec"].get("replicas", 1)))
            for r in self.releases.values()
            for d in chart.by_kind(r.manifests, "Deployment")
            if wanted.items() <= d["metadata"].get("labels", {}).items()
        ]
        if not names:
            return Result(1, stderr="error: no matching resources found\n")
        deadline = time.monotonic() + duration_s(flags.get("--timeout", "5m"))
        out: list[str] = []
        for name, replicas in names:
            while not self._ready(name, replicas):
                if time.monotonic() > deadline:
                    return Result(1, "".join(out), f"error: timed out waiting for deployment {name!r}\n")
                time.sleep(0.2)
            out.append(f'deployment "{name}" successfully rolled out\n')
        return Result(0, "".join(out))

    def _ready(self, deployment: str, replicas: int) -> bool:
        pods = self.cluster.pods.get(deployment, [])
        return len(pods) == replicas and all(p.ready() for p in pods)

    # -- serving the stand-ins ------------------------------------------------------------------

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve ``run`` on 127.0.0.1 for the stand-ins; yields the URL."""
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                call = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body = json.dumps(owner.run(call["argv"], call["cwd"]).__dict__).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            server.server_close()

    @staticmethod
    def shims(folder: Path, url: str) -> dict[str, str]:
        """Write ``helm`` and ``kubectl`` into ``folder``; the environment that puts them first on PATH."""
        folder.mkdir(parents=True, exist_ok=True)
        for tool in ("helm", "kubectl"):
            path = folder / tool
            path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m streampod.localhelm {tool} "$@"\n')
            path.chmod(0o755)
        return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}", ENV_URL: url}


def _split(args: Sequence[str]) -> tuple[list[str], dict[str, str], list[tuple[str, Any]]]:
    """Positional arguments, other flags (value or ""), and the value flags in their order."""
    positional: list[str] = []
    flags: dict[str, str] = {}
    values: list[tuple[str, Any]] = []
    boolean = {"--install", "--reuse-values", "--atomic", "--wait", "--all", "-a", "--skip-tests"}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=")
        if arg.startswith("-") and arg not in boolean:
            value = inline if eq else args[i + 1]
            i += 0 if eq else 1
            if name in _VALUE_FLAGS:
                values.append((name, value))
            else:
                flags[name] = value
        elif arg.startswith("-"):
            flags[arg] = ""
        else:
            positional.append(arg)
        i += 1
    return positional, flags, values


def _merged_values(base: Mapping[str, Any], values: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """What helm makes of ``base`` then ``values``: rendered by helm itself from a values-only chart."""
    with tempfile.TemporaryDirectory(prefix="streampod-localhelm-") as tmp:
        folder = Path(tmp) / "values"
        (folder / "templates").mkdir(parents=True)
        (folder / "Chart.yaml").write_text("apiVersion: v2\nname: values\nversion: 0.0.0\n")
        (folder / "templates" / "values.yaml").write_text("{{ toYaml .Values }}\n")
        args: list[str] = []
        for i, (flag, value) in enumerate([("-f", dict(base)), *values]):
            if isinstance(value, dict):
                path = Path(tmp) / f"values-{i}.yaml"
                path.write_text(yaml.safe_dump(value))
                value = str(path)
            args += [flag, str(value)]
        out = chart.helm("template", "values", str(folder), *args)
    docs = [doc for doc in yaml.safe_load_all(out) if doc is not None]
    return dict(docs[0]) if docs else {}


def main(argv: list[str] | None = None) -> int:
    """The stand-in: forward argv to the LocalHelm named by STREAMPOD_LOCALHELM_URL."""
    args = sys.argv[1:] if argv is None else argv
    url = os.environ.get(ENV_URL)
    if not url:
        print(f"localhelm: {ENV_URL} is not set (this {args[0]} is a test stand-in)", file=sys.stderr)
        return EXIT_UNSUPPORTED
    request = urllib.request.Request(url, data=json.dumps({"argv": args, "cwd": os.getcwd()}).encode(), method="POST")  # noqa: S310 (loopback)
    with urllib.request.urlopen(request, timeout=1800) as reply:  # noqa: S310
        result = json.loads(reply.read())
    sys.stdout.write(result["stdout"])
    sys.stderr.write(result["stderr"])
    return int(result["code"])


if __name__ == "__main__":
    sys.exit(main())
