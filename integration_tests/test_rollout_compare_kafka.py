"""Two colours on the same input, a deliberate difference in the candidate: the report finds it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pipeline_support import APPS, keyed_values, produce, read_all

pytestmark = pytest.mark.kafka


def test_compare_finds_exactly_the_candidates_difference(
    kafka_broker, topic_factory, kafka_env, stage_factory, tmp_path
):
    boot = kafka_broker.bootstrap_servers
    t_in, real, shadow = topic_factory(2, "in"), topic_factory(2, "real"), topic_factory(2, "shadow")
    inputs = keyed_values(400, keys=40)
    produce(boot, t_in, inputs)
    blue = stage_factory(app_module=str(APPS / "scorer.py"), **kafka_env(t_in, real, group="pipeline"))
    green = stage_factory(
        app_module=str(APPS / "scorer.py"),
        app_env={"SCORER_VARIANT": "candidate"},
        **kafka_env(t_in, shadow, group="pipeline-green"),
    )
    blue.start()
    green.start()
    assert len(read_all(boot, [real], 400, timeout=120)) >= 400
    assert len(read_all(boot, [shadow], 400, timeout=120)) >= 400

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "streampod",
                "rollout",
                "compare",
                "--bootstrap",
                boot,
                "--real",
                real,
                "--shadow",
                shadow,
                "--tolerance",
                "score=0.01",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = run("--format", "json", "--markdown-out", str(tmp_path / "report.md"), "--min-samples", "400")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["paired"] == 400
    assert report["agreement_exact"] == 0.0
    assert report["agreement_tolerant"] == 0.9
    assert report["active"]["inputs_answered"] == 400
    assert report["active"]["latency_p50_ms"] is not None
    seqs = sorted(m["active"]["seq"] % 10 for m in report["mismatches"])
    assert seqs == [0] * len(seqs)
    assert all(m["fields"] == ["score"] for m in report["mismatches"])
    assert "| latency p99 |" in (tmp_path / "report.md").read_text()

    gated = run("--min-agreement", "0.95")
    assert gated.returncode == 3
    assert "agreement 90.00 % is below the minimum 95.00 %" in gated.stdout
    assert run("--min-agreement", "0.85").returncode == 0
