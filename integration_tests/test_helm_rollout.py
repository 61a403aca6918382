"""Blue/green on the real broker: what the chart renders, run as processes, promoted as Kubernetes would.

The chart is rendered with blue active and green as candidate; every container of every rendered pod
runs as a local process with the env the chart gives it (streampod.localpod). A steady stream is
produced; then the chart is rendered with green active and the difference applied: each Deployment
whose pod template changed gets a new pod, ready before the old one is stopped (maxSurge 1,
maxUnavailable 0). The two colours run integration_tests/apps/variant.py with a different
MODEL_VARIANT (set through the chart's per-colour appEnv), so every output says who made it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_support import APPS, Out, SteadyStream, committed, end_offsets, read_all, wait_committed_to_end

from streampod import chart
from streampod.contract import parse_source_header
from streampod.localkafka import LocalKafka
from streampod.localpod import LocalCluster

pytestmark = pytest.mark.kafka

PARTITIONS = 3


def _values(t: dict[str, str], boot: str, active: str) -> dict[str, Any]:
    return {
        "input": {"topics": [t["in"]], "consumerGroup": t["group"]},
        "output": {"topic": t["out"], "shadowTopic": t["shadow"]},
        "deadLetter": {"topic": t["dlq"], "shadowTopic": t["shadow_dlq"]},
        "kafka": {"bootstrapServers": boot},
        "app": {"module": str(APPS / "variant.py")},
        "inputReader": {"env": {"STREAMPOD_COMMIT_INTERVAL_MS": "200", "STREAMPOD_DRAIN_TIMEOUT_S": "5"}},
        "terminationGracePeriodSeconds": 20,
        "blueGreen": {
            "enabled": True,
            "activeColor": active,
            "blue": {"appTag": "1.0.0", "appEnv": {"MODEL_VARIANT": "blue"}},
            "green": {"appTag": "2.0.0", "appEnv": {"MODEL_VARIANT": "green"}},
        },
    }


def _wait(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _count(boot: str, topic: str) -> int:
    return sum(end_offsets(boot, topic, PARTITIONS).values())


def _past(boot: str, group: str, topic: str, ends: dict[int, int]) -> bool:
    done = committed(boot, group, topic, PARTITIONS)
    return all(done[p] >= ends[p] for p in ends)


def _variants(outs: list[Out]) -> set[str]:
    return {o.json()["variant"] for o in outs}


def _between(outs: list[Out], lo: dict[int, int] | None, hi: dict[int, int] | None) -> list[Out]:
    return [
        o for o in outs if (lo is None or o.offset >= lo[o.partition]) and (hi is None or o.offset < hi[o.partition])
    ]


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster")
    yield c
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(c.logs())
    c.stop()


def test_promotion_loses_nothing_and_the_shadow_holds_only_candidate_results(
    kafka_broker: LocalKafka, topic_factory: Any, cluster: LocalCluster
) -> None:
    boot = kafka_broker.bootstrap_servers
    t = {
        name: topic_factory(PARTITIONS, name.replace("_", "-")) for name in ("in", "out", "shadow", "dlq", "shadow_dlq")
    }
    t["group"] = f"{t['in']}-stage"
    main_group = t["group"]

    blue_active = chart.render(_values(t, boot, "blue"), tests=False)
    green_active = chart.render(_values(t, boot, "green"), tests=False)

    stream = SteadyStream(boot, t["in"])
    stream.start()
    try:
        cluster.apply(blue_active)
        # The candidate starts at the end of the input: wait until it consumes, then mark messages
        # only the candidate rejects. They must reach the shadow dead letters, never the real ones.
        _wait("green's first shadow output", lambda: _count(boot, t["shadow"]) > 0, 60)
        stream.mark_next(10, reject_if="green")
        _wait("the marked messages", lambda: len(stream.marked) >= 10, 30)
        marks_end = end_offsets(boot, t["in"], PARTITIONS)
        for group in (main_group, f"{main_group}-candidate-green"):
            _wait(f"{group} to commit past the marked messages", lambda g=group: _past(boot, g, t["in"], marks_end), 60)

        before_out = end_offsets(boot, t["out"], PARTITIONS)
        before_shadow = end_offsets(boot, t["shadow"], PARTITIONS)
        committed_at_switch = committed(boot, main_group, t["in"], PARTITIONS)

        cluster.apply(green_active)  # promotion: both Deployments roll

        after_out = end_offsets(boot, t["out"], PARTITIONS)
        after_shadow = end_offsets(boot, t["shadow"], PARTITIONS)
        # Blue, now the candidate, starts at the end too; then messages only it rejects.
        _wait(
            "blue's first shadow output after the promotion",
            lambda: _count(boot, t["shadow"]) > sum(after_shadow.values()),
            60,
        )
        stream.mark_next(10, reject_if="blue")
        _wait("the second marked messages", lambda: len(stream.marked) >= 20, 30)
        time.sleep(2)
    finally:
        stream.stop()

    for group in (main_group, f"{main_group}-candidate-blue"):
        wait_committed_to_end(boot, group, t["in"], PARTITIONS, timeout=60)
    outputs = read_all(boot, [t["out"]], _count(boot, t["out"]), timeout=60)
    shadow = read_all(boot, [t["shadow"]], _count(boot, t["shadow"]), timeout=60)
    real_dlq = read_all(boot, [t["dlq"]], 0, timeout=3)
    shadow_dlq = read_all(boot, [t["shadow_dlq"]], _count(boot, t["shadow_dlq"]), timeout=30)

    dups = len(outputs) - len({(o.json()["key"], o.json()["seq"]) for o in outputs})
    print(
        f"rollout: {len(stream.sent)} inputs, {len(outputs)} real outputs ({dups} repeated), {len(shadow)} shadow, "
        f"{len(shadow_dlq)} shadow dead letters; committed at the switch {committed_at_switch}"
    )

    # 1. No input message is missing from the real output across the switch.
    produced = set(stream.sent)
    seen = {(o.json()["key"], o.json()["seq"]) for o in outputs}
    missing = produced - seen
    assert not missing, (
        f"{len(missing)} of {len(produced)} inputs missing from the real output, e.g. {sorted(missing)[:5]}"
    )

    # 2. Before the switch only blue wrote the real output and only green the shadow; after it, the reverse.
    assert _variants(_between(outputs, None, before_out)) == {"blue"}
    assert _variants(_between(shadow, None, before_shadow)) == {"green"}
    assert _variants(_between(outputs, after_out, None)) == {"green"}
    assert _variants(_between(shadow, after_shadow, None)) == {"blue"}
    assert _variants(outputs) == {"blue", "green"} and _variants(shadow) == {"blue", "green"}

    # 3. Dead letters of the candidate went to the shadow dead letters only.
    assert real_dlq == [], f"{len(real_dlq)} dead letters in the real dead-letter topic"
    rejected = {(o.json()["key"], o.json()["seq"], o.json()["reject_if"]) for o in shadow_dlq}
    assert set(stream.marked) <= rejected
    # ... and the active colour processed those same messages into the real output.
    assert {(k, s) for k, s, _ in stream.marked} <= seen

    # 4. Green resumed from the pipeline group's committed offsets: not before what was committed when
    #    the promotion began (no rewind), not after the last input blue answered (no gap).
    first_green: dict[int, int] = {}
    last_blue: dict[int, int] = {}
    for o in outputs:
        _, part_text, offset_text = parse_source_header(o.headers["streampod-source"].decode())[0].rsplit("/", 2)
        src, part = int(offset_text), int(part_text)
        if o.json()["variant"] == "green":
            first_green[part] = min(first_green.get(part, src), src)
        else:
            last_blue[part] = max(last_blue.get(part, src), src)
    print(f"rollout: blue's last offsets {last_blue}, green's first {first_green}")
    assert set(first_green) == set(last_blue) == set(range(PARTITIONS))
    for p in range(PARTITIONS):
        assert committed_at_switch[p] <= first_green[p] <= last_blue[p] + 1, p

    # Every replaced container drained and exited 0 on SIGTERM.
    assert cluster.stopped and all(code == 0 for _, codes in cluster.stopped for code in codes.values()), (
        cluster.stopped
    )
