"""``streampod release STEP``: the steps of the blue/green release pipeline (ci/release-pipeline.yml).

Each step runs a few ``helm`` and ``kubectl`` commands found on PATH and prints each one before it
runs, so the log of a pipeline run shows exactly what was done. In Azure DevOps they are the real
tools; in the tests here, streampod.localhelm puts stand-ins first on PATH that render the chart
with the real helm and run it in a LocalCluster. The steps:

- ``plan``: read the release's values; say which colour is active and which becomes the candidate
  (Azure DevOps output variables ``activeColor``, ``candidateColor``).
- ``candidate``: the new app tag on the candidate colour, the active colour kept.
- ``verify``: every Deployment of the release rolled out and ready (``kubectl rollout status``).
- ``compare``: ``streampod rollout compare`` on the release's real and shadow topics; the Markdown
  report becomes the run's summary, the JSON one is written for the pipeline artifact; the exit code
  is the gate (3: a threshold missed).
- ``promote``: the candidate becomes active; the old colour stays as candidate (instant rollback).
- ``rollback``: the previous active colour active again; the rejected colour scaled to zero.

Every ``helm upgrade`` is ``--reuse-values --atomic --wait --timeout T``: only the named values
change, and a release whose pods do not become ready is rolled back by helm itself.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streampod.errors import ConfigError

COLOURS = ("blue", "green")
EXIT_FAILED = 1


@dataclass(frozen=True)
class Target:
    """The Helm release a pipeline run works on."""

    release: str
    namespace: str
    chart: str
    chart_version: str | None = None
    #: helm/kubectl duration, e.g. "10m".
    timeout: str = "10m"


def other(colour: str) -> str:
    if colour not in COLOURS:
        raise ConfigError(f"colour {colour!r}: choose blue or green")
    return COLOURS[1 - COLOURS.index(colour)]


def helm_upgrade(t: Target, sets: Mapping[str, str], strings: Mapping[str, str] | None = None) -> list[str]:
    """``helm upgrade`` changing only ``sets`` (and ``strings``, always strings) on the release's values."""
    argv = ["helm", "upgrade", t.release, t.chart, "--namespace", t.namespace, "--reuse-values"]
    if t.chart_version:
        argv += ["--version", t.chart_version]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    # --set-string: an image tag such as 1.10 or a build id must not become a number.
    for key, value in (strings or {}).items():
        argv += ["--set-string", f"{key}={value}"]
    return [*argv, "--atomic", "--wait", "--timeout", t.timeout]


def candidate_argv(t: Target, active: str, app_tag: str) -> list[str]:
    candidate = other(active)
    return helm_upgrade(
        t,
        {"blueGreen.activeColor": active, "blueGreen.inactive": "candidate"},
        {f"blueGreen.{candidate}.appTag": app_tag},
    )


def promote_argv(t: Target, colour: str) -> list[str]:
    other(colour)
    return helm_upgrade(t, {"blueGreen.activeColor": colour, "blueGreen.inactive": "candidate"})


def rollback_argv(t: Target, colour: str, retire: bool) -> list[str]:
    other(colour)
    inactive = "scaledToZero" if retire else "candidate"
    return helm_upgrade(t, {"blueGreen.activeColor": colour, "blueGreen.inactive": inactive})


def verify_argv(t: Target) -> list[str]:
    return [
        "kubectl",
        "rollout",
        "status",
        "deployment",
        "--namespace",
        t.namespace,
        "--selector",
        f"app.kubernetes.io/instance={t.release}",
        "--timeout",
        t.timeout,
    ]


def values_argv(t: Target) -> list[str]:
    return ["helm", "get", "values", t.release, "--namespace", t.namespace, "--all", "--output", "json"]


# -- running ------------------------------------------------------------------------------------


class StepFailed(Exception):
    """A command of a step failed; the message says which and how."""


def run(argv: Sequence[str], capture: bool = False) -> str:
    """Run ``argv`` (found on PATH), echoed first; its stdout when ``capture``."""
    print(f"+ {shlex.join(argv)}", file=sys.stderr, flush=True)
    done = subprocess.run(argv, capture_output=capture, text=True, check=False)
    if done.returncode != 0:
        detail = f": {done.stderr.strip()}" if capture and done.stderr.strip() else ""
        raise StepFailed(f"{argv[0]} {argv[1]} failed with exit code {done.returncode}{detail}")
    return done.stdout if capture else ""


def set_output(name: str, value: str) -> None:
    """An Azure DevOps output variable of this step (``<step name>.<name>`` in later jobs and stages)."""
    print(f"##vso[task.setvariable variable={name};isOutput=true]{value}", flush=True)


def current_values(t: Target) -> dict[str, Any]:
    values: dict[str, Any] = json.loads(run(values_argv(t), capture=True) or "{}")
    return values


def active_colour(values: Mapping[str, Any]) -> str:
    bg = values.get("blueGreen") or {}
    if not bg.get("enabled"):
        raise StepFailed(
            "the release does not run blue/green (blueGreen.enabled is false): install it with blue/green on "
            "first (docs/helm.md, Blue/green step 1)"
        )
    colour = str(bg.get("activeColor", "blue"))
    other(colour)
    return colour


def topics(values: Mapping[str, Any]) -> dict[str, str]:
    """The release's real and shadow topics, with the chart's defaults (templates/_helpers.tpl)."""
    output, dead, group = values.get("output", {}), values.get("deadLetter", {}), values["input"]["consumerGroup"]
    real_dead = dead.get("topic") or f"{group}.dlq"
    return {
        "real": output["topic"],
        "shadow": output.get("shadowTopic") or f"{output['topic']}.shadow",
        "real_dead_letter": real_dead,
        "shadow_dead_letter": dead.get("shadowTopic") or f"{real_dead}.shadow",
    }


def compare_argv(values: Mapping[str, Any], out_dir: Path, window_s: float, extra: Sequence[str]) -> list[str]:
    t = topics(values)
    argv = [
        "--real",
        t["real"],
        "--shadow",
        t["shadow"],
        "--real-dead-letter",
        t["real_dead_letter"],
        "--shadow-dead-letter",
        t["shadow_dead_letter"],
        "--last",
        f"{window_s:g}",
        "--json-out",
        str(out_dir / "compare.json"),
        "--markdown-out",
        str(out_dir / "compare.md"),
    ]
    bootstrap = (values.get("kafka") or {}).get("bootstrapServers")
    if bootstrap and "--bootstrap" not in extra:
        argv += ["--bootstrap", str(bootstrap)]
    return [*argv, *extra]


# -- the steps ----------------------------------------------------------------------------------


def step_plan(t: Target, args: argparse.Namespace) -> int:
    active = active_colour(current_values(t))
    print(f"active colour: {active}; the candidate will be {other(active)}")
    set_output("activeColor", active)
    set_output("candidateColor", other(active))
    return 0


def step_candidate(t: Target, args: argparse.Namespace) -> int:
    active = active_colour(current_values(t))
    if args.active and args.active != active:
        raise StepFailed(f"the plan said {args.active} is active, but the release now has {active}: re-run the plan")
    run(candidate_argv(t, active, args.app_tag))
    run(verify_argv(t))
    return 0


def step_verify(t: Target, args: argparse.Namespace) -> int:
    run(verify_argv(t))
    return 0


def step_compare(t: Target, args: argparse.Namespace) -> int:
    from streampod.rollout import compare

    values = current_values(t)
    active_colour(values)
    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.wait > 0:
        print(f"letting the candidate see traffic for {args.wait:g} s before comparing", flush=True)
        time.sleep(args.wait)
    argv = compare_argv(values, out_dir, args.window, args.compare_args)
    print(f"+ streampod rollout compare {shlex.join(argv)}", file=sys.stderr, flush=True)
    code = compare.main(argv)
    summary = out_dir / "compare.md"
    if summary.exists():
        # The run's summary page shows this Markdown: what the approver reads.
        print(f"##vso[task.uploadsummary]{summary}", flush=True)
    return code


def step_promote(t: Target, args: argparse.Namespace) -> int:
    run(promote_argv(t, args.to))
    run(verify_argv(t))
    return 0


def step_rollback(t: Target, args: argparse.Namespace) -> int:
    run(rollback_argv(t, args.to, retire=not args.keep_candidate))
    run(verify_argv(t))
    return 0


_STEPS = {
    "plan": step_plan,
    "candidate": step_candidate,
    "verify": step_verify,
    "compare": step_compare,
    "promote": step_promote,
    "rollback": step_rollback,
}


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--release", required=True, help="the Helm release (one pipeline stage)")
    common.add_argument("--namespace", required=True)
    common.add_argument("--chart", default="", help="chart path or oci://<registry>/helm/streampod (upgrades)")
    common.add_argument("--chart-version", help="the chart version (needed for an oci:// chart)")
    common.add_argument("--timeout", default="10m", help="helm and kubectl timeout (default 10m)")

    p = argparse.ArgumentParser(
        prog="streampod release", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="step", required=True)
    sub.add_parser("plan", parents=[common], help="which colour is active, which becomes the candidate")
    c = sub.add_parser("candidate", parents=[common], help="deploy the new app tag as the candidate colour")
    c.add_argument("--app-tag", required=True, help="the new app image tag")
    c.add_argument("--active", choices=COLOURS, help="the active colour the plan saw (refuse if it changed)")
    sub.add_parser("verify", parents=[common], help="every Deployment of the release rolled out and ready")
    m = sub.add_parser("compare", parents=[common], help="compare the candidate with the active colour (the gate)")
    m.add_argument("--out-dir", required=True, help="where compare.md and compare.json are written")
    m.add_argument("--wait", type=float, default=0.0, help="seconds to let the candidate see traffic first")
    m.add_argument("--window", type=float, required=True, help="compare the last SECONDS of output")
    m.add_argument("compare_args", nargs=argparse.REMAINDER, help="after --: thresholds etc. for rollout compare")
    for name, what in (("promote", "the colour to make active"), ("rollback", "the colour to make active again")):
        s = sub.add_parser(name, parents=[common], help=f"{name}: {what}")
        s.add_argument("--to", required=True, choices=COLOURS, help=what)
    r = sub.choices["rollback"]
    r.add_argument("--keep-candidate", action="store_true", help="keep the other colour running as candidate")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "compare_args", None) and args.compare_args[0] == "--":
        args.compare_args = args.compare_args[1:]
    if args.step in ("candidate", "promote", "rollback") and not args.chart:
        print(f"streampod release {args.step}: --chart is needed", file=sys.stderr)
        return 2
    target = Target(args.release, args.namespace, args.chart, args.chart_version, args.timeout)
    try:
        return _STEPS[args.step](target, args)
    except (StepFailed, ConfigError) as exc:
        print(f"streampod release {args.step}: {exc}", file=sys.stderr)
        return EXIT_FAILED
