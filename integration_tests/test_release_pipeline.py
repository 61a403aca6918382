"""The release pipeline's steps, run as ci/release-pipeline.yml runs them, on the real broker.

``streampod release plan / candidate / compare / promote / rollback`` run as subprocesses with the
same arguments as the pipeline's steps; ``helm`` and ``kubectl`` on their PATH are streampod.localhelm's
stand-ins: the real ``helm template`` of the chart, applied to a LocalCluster that runs every pod's
containers as processes and rolls Deployments as the controller does. The colours run
integration_tests/apps/scorer.py; green (SCORER_VARIANT=candidate) differs on every tenth input, so
the comparison's agreement is 90 % and each real output tells which colour wrote it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipeline_support import APPS, Out, SteadyStream, end_offsets, read_all, wait_committed_to_end

from streampod import chart
from streampod.localhelm import LocalHelm
from streampod.localkafka import LocalKafka
from streampod.localpod import LocalCluster

pytestmark = pytest.mark.kafka

PARTITIONS = 2
RELEASE, NAMESPACE = "scorer", "pipelines"


def _colour(o: Out) -> str:
    v = o.json()
    return "blue" if v["score"] == v["seq"] * 0.5 else "green"


@pytest.fixture
def local_helm(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[LocalHelm, dict[str, str]]]:
    cluster = LocalCluster(tmp_path / "cluster")
    helm = LocalHelm(cluster)
    with helm.serve() as url:
        yield helm, LocalHelm.shims(tmp_path / "bin", url)
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(cluster.logs())
        cluster.stop()


def test_candidate_compare_promote_rollback_through_the_release_steps(
    kafka_broker: LocalKafka, topic_factory: Any, local_helm: tuple[LocalHelm, dict[str, str]], tmp_path: Path
) -> None:
    helm, env = local_helm
    boot = kafka_broker.bootstrap_servers
    t = {n: topic_factory(PARTITIONS, n.replace("_", "-")) for n in ("in", "out", "shadow", "dlq", "shadow_dlq")}
    group = f"{t['in']}-stage"
    values = tmp_path / "scorer.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "input": {"topics": [t["in"]], "consumerGroup": group},
                "output": {"topic": t["out"], "shadowTopic": t["shadow"]},
                "deadLetter": {"topic": t["dlq"], "shadowTopic": t["shadow_dlq"]},
                "kafka": {"bootstrapServers": boot},
                "app": {"module": str(APPS / "scorer.py")},
                "inputReader": {"env": {"STREAMPOD_COMMIT_INTERVAL_MS": "200", "STREAMPOD_DRAIN_TIMEOUT_S": "5"}},
                "terminationGracePeriodSeconds": 20,
                "blueGreen": {
                    "enabled": True,
                    "activeColor": "blue",
                    "inactive": "scaledToZero",
                    "blue": {"appTag": "1.0.0"},
                    "green": {"appEnv": {"SCORER_VARIANT": "candidate"}},
                },
            }
        )
    )
    common = ["--release", RELEASE, "--namespace", NAMESPACE, "--timeout", "2m"]
    upgrade = [*common, "--chart", str(chart.CHART)]

    def step(*args: str, expect: int = 0) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "streampod", "release", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == expect, f"{args[0]}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    # docs/helm.md step 1, once per stage (not a pipeline step): blue active, green scaled to zero.
    install = subprocess.run(
        ["helm", "upgrade", "--install", RELEASE, str(chart.CHART), "-n", NAMESPACE, "-f", str(values)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    stream = SteadyStream(boot, t["in"])
    stream.start()
    try:
        plan = step("plan", *common)
        assert "##vso[task.setvariable variable=activeColor;isOutput=true]blue" in plan
        assert "##vso[task.setvariable variable=candidateColor;isOutput=true]green" in plan

        step("candidate", *upgrade, "--app-tag", "2.0.0", "--active", "blue")
        green = helm.releases[RELEASE].values["blueGreen"]
        assert green["green"]["appTag"] == "2.0.0" and green["inactive"] == "candidate"
        assert green["green"]["appEnv"] == {"SCORER_VARIANT": "candidate"}  # --reuse-values kept the rest

        # The gate: 90 % agreement fails a 95 % minimum (exit 3) and passes 85 %; both publish the report.
        reports = tmp_path / "compare"
        gate = ["--out-dir", str(reports), "--window", "6", "--", "--tolerance", "score=0.01", "--min-samples", "20"]
        failed = step("compare", *common, "--wait", "8", *gate, "--min-agreement", "0.95", expect=3)
        assert f"##vso[task.uploadsummary]{reports / 'compare.md'}" in failed
        assert "**Gate: FAILED**: agreement" in (reports / "compare.md").read_text()
        passed = step("compare", *common, *gate, "--min-agreement", "0.85")
        report = json.loads((reports / "compare.json").read_text())
        assert report["passed"] and report["paired"] >= 20, passed
        assert 0.8 < report["agreement_tolerant"] < 1.0 and report["candidate"]["dead_letters"] == 0
        assert all(m["fields"] == ["score"] for m in report["mismatches"])

        before_promote = end_offsets(boot, t["out"], PARTITIONS)
        step("promote", *upgrade, "--to", "green")
        after_promote = end_offsets(boot, t["out"], PARTITIONS)
        _wait_for_more(boot, t["out"], after_promote, 30)
        before_rollback = end_offsets(boot, t["out"], PARTITIONS)
        step("rollback", *upgrade, "--to", "blue")
        after_rollback = end_offsets(boot, t["out"], PARTITIONS)
        _wait_for_more(boot, t["out"], after_rollback, 30)
    finally:
        stream.stop()

    wait_committed_to_end(boot, group, t["in"], PARTITIONS, timeout=60)
    total = sum(end_offsets(boot, t["out"], PARTITIONS).values())
    outputs = read_all(boot, [t["out"]], total, timeout=60)

    # Nothing lost across the promotion and the rollback.
    seen = {(o.json()["key"], o.json()["seq"]) for o in outputs}
    missing = set(stream.sent) - seen
    assert not missing, f"{len(missing)} of {len(stream.sent)} inputs missing from the real output"

    # Who wrote the real output: blue, then green after the promotion, then blue again after the rollback
    # (during each switch both may write: the new colour's pod is ready before the old one stops).
    def colours(lo: dict[int, int] | None, hi: dict[int, int] | None) -> set[str]:
        return {
            _colour(o)
            for o in outputs
            if (lo is None or o.offset >= lo[o.partition]) and (hi is None or o.offset < hi[o.partition])
        }

    assert colours(None, before_promote) == {"blue"}
    assert colours(after_promote, before_rollback) == {"green"}
    assert colours(after_rollback, None) == {"blue"}

    # Rollback retired the rejected colour; every helm upgrade the steps ran was atomic, waited, timed.
    final = helm.releases[RELEASE].values["blueGreen"]
    assert final["activeColor"] == "blue" and final["inactive"] == "scaledToZero"
    upgrades = [c for c in helm.calls if c[:2] == ["helm", "upgrade"] and "--install" not in c]
    assert len(upgrades) == 3
    for call in upgrades:
        assert {"--atomic", "--wait", "--reuse-values"} <= set(call) and call[call.index("--timeout") + 1] == "2m"
    assert sum(c[:3] == ["kubectl", "rollout", "status"] for c in helm.calls) == 3


def _wait_for_more(boot: str, topic: str, since: dict[int, int], timeout: float) -> None:
    """Until the topic has grown past ``since`` on every partition: the new active colour is writing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = end_offsets(boot, topic, PARTITIONS)
        if all(now[p] > since[p] + 5 for p in since):
            return
        time.sleep(0.5)
    raise AssertionError(f"{topic} did not grow past {since}")
