"""The pipeline stage end to end: three real processes, the real broker, at-least-once checked."""

from __future__ import annotations

import http.client
import re
import sys
import urllib.error
import urllib.request

import pytest
from pipeline_support import (
    STDLIB_APP,
    TRANSFORM_APP,
    check_complete_and_ordered,
    keyed_values,
    produce,
    read_all,
    wait_committed_to_end,
)

pytestmark = pytest.mark.kafka


def metric(stage, component: str, name: str) -> float:  # type: ignore[no-untyped-def]
    """Sum of every sample of ``name`` on a component's /metrics."""
    _, text = stage[component].get("/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_ten_thousand_keyed_messages_over_six_partitions(kafka_broker, topic_factory, kafka_env, stage_factory):
    boot = kafka_broker.bootstrap_servers
    t_in, t_out = topic_factory(6, "in"), topic_factory(6, "out")
    env = kafka_env(t_in, t_out, group="e2e-10k")
    inputs = keyed_values(10_000, keys=500)
    produce(boot, t_in, inputs)
    stage = stage_factory(app_module=str(TRANSFORM_APP), **env)
    stage.start()
    outputs = read_all(boot, [t_out], len(inputs), timeout=180)
    dups = check_complete_and_ordered(outputs, inputs)
    assert all(o.json()["processed"] is True for o in outputs)
    assert dups == 0, f"{dups} duplicates in a run without faults"
    wait_committed_to_end(boot, "e2e-10k", t_in, 6)
    assert stage.stop() == {"input-reader": 0, "app": 0, "output-writer": 0}


@pytest.mark.parametrize("mode", ["batch", "single"])
def test_sidecars_with_an_app_that_uses_only_the_standard_library(
    mode, kafka_broker, topic_factory, kafka_env, stage_factory
):
    boot = kafka_broker.bootstrap_servers
    t_in, t_out = topic_factory(3, "in"), topic_factory(3, "out")
    env = kafka_env(t_in, t_out, reader={"STREAMPOD_DELIVERY_MODE": mode})
    stage = stage_factory(app_argv=[sys.executable, str(STDLIB_APP)], **env)
    stage["app"].env.update(
        APP_PORT=str(stage.ports.app),
        OPS_PORT=str(stage.ports.app_ops),
        MODE=mode,
        OUTPUT_URL=f"http://127.0.0.1:{stage.ports.writer}",
    )
    inputs = keyed_values(600, keys=30)
    produce(boot, t_in, inputs)
    stage.start()
    outputs = read_all(boot, [t_out], len(inputs), timeout=120)
    check_complete_and_ordered(outputs, inputs)
    assert all(o.json()["via"] == "stdlib" for o in outputs)


def test_app_failing_with_500_for_a_while_loses_nothing(kafka_broker, topic_factory, kafka_env, stage_factory):
    boot = kafka_broker.bootstrap_servers
    t_in, t_out = topic_factory(2, "in"), topic_factory(2, "out")
    env = kafka_env(t_in, t_out)
    stage = stage_factory(app_argv=[sys.executable, str(STDLIB_APP)], **env)
    stage["app"].env.update(
        APP_PORT=str(stage.ports.app),
        OPS_PORT=str(stage.ports.app_ops),
        MODE="batch",
        FAIL_SECONDS="3",
        OUTPUT_URL=f"http://127.0.0.1:{stage.ports.writer}",
    )
    inputs = keyed_values(300, keys=20)
    produce(boot, t_in, inputs)
    stage.start()
    outputs = read_all(boot, [t_out], len(inputs), timeout=120)
    check_complete_and_ordered(outputs, inputs)
    assert metric(stage, "input-reader", "streampod_reader_batch_retries_total") > 0
    assert metric(stage, "input-reader", "streampod_reader_messages_dead_lettered_total") == 0


def test_rejected_and_failing_messages_go_to_the_dead_letter_topic(
    kafka_broker, topic_factory, kafka_env, stage_factory
):
    boot = kafka_broker.bootstrap_servers
    t_in, t_out, t_dlq = topic_factory(3, "in"), topic_factory(3, "out"), topic_factory(1, "dlq")
    env = kafka_env(t_in, t_out, dlq=t_dlq)
    inputs = keyed_values(200, keys=10)
    for _, v in inputs:
        v["reject"] = v["i"] % 10 == 3
        v["explode"] = v["i"] % 10 == 7
        v["card"] = "PAYLOAD-MARKER-4242"
    produce(boot, t_in, inputs)
    stage = stage_factory(app_module=str(TRANSFORM_APP), **env)
    stage.start()
    records = read_all(boot, [t_out, t_dlq], len(inputs), timeout=120)
    out = [r for r in records if r.topic == t_out]
    dead = [r for r in records if r.topic == t_dlq]
    assert sorted(o.json()["i"] for o in out) == [v["i"] for _, v in inputs if v["i"] % 10 not in (3, 7)]
    for o in out:  # every output names its input: topic/partition/offset@timestamp
        assert re.fullmatch(rf"{re.escape(t_in)}/[0-2]/\d+@\d+".encode(), o.headers["streampod-source"])
    assert sorted(d.json()["i"] for d in dead) == [v["i"] for _, v in inputs if v["i"] % 10 in (3, 7)]
    for d in dead:
        v = d.json()
        reason = d.headers["streampod-error"].decode()
        assert ("asked to reject" in reason) if v["reject"] else ("ValueError: boom" in reason)
        assert d.headers["streampod-source-topic"].decode() == t_in
        assert re.fullmatch(rb"\d+", d.headers["streampod-source-offset"])
        coordinates = [d.headers[f"streampod-source-{f}"].decode() for f in ("topic", "partition", "offset")]
        assert d.headers["streampod-source"].decode().startswith("/".join(coordinates) + "@")
        assert d.key == v["key"]
    assert stage["input-reader"].alive() and stage["app"].alive()
    # Failures are logged with coordinates, never with the payload.
    logs = "".join(c.log_path.read_text() for c in stage.components.values())
    assert "dead-lettered" in logs
    assert "PAYLOAD-MARKER-4242" not in logs


def test_bad_input_is_dead_lettered_at_the_reader_with_a_reason(kafka_broker, topic_factory, kafka_env, stage_factory):
    boot = kafka_broker.bootstrap_servers
    t_in, t_out, t_dlq = topic_factory(1, "in"), topic_factory(1, "out"), topic_factory(1, "dlq")
    env = kafka_env(t_in, t_out, dlq=t_dlq, reader={"STREAMPOD_MAX_MESSAGE_BYTES": "10000"})
    bad = [("a", b"\xff\xfe not utf-8"), ("b", b"{not json"), ("c", b"[" + b"1," * 20_000 + b"1]")]
    good = [("g", {"key": "g", "seq": 0, "i": 0})]
    produce(boot, t_in, [*bad, *good])
    stage = stage_factory(app_module=str(TRANSFORM_APP), **env)
    stage.start()
    records = read_all(boot, [t_out, t_dlq], 4, timeout=60)
    reasons = {r.key: r.headers["streampod-error"].decode() for r in records if r.topic == t_dlq}
    assert set(reasons) == {"a", "b", "c"}
    assert "not valid JSON" in reasons["a"] and "not valid JSON" in reasons["b"]
    assert "exceeds STREAMPOD_MAX_MESSAGE_BYTES" in reasons["c"]
    assert [r.key for r in records if r.topic == t_out] == ["g"]
    # The payload itself is kept, byte for byte, for inspection and replay.
    assert {r.key: r.value for r in records if r.topic == t_dlq}["a"] == bad[0][1]


@pytest.mark.parametrize("component", ["app", "output-writer"])
def test_malformed_requests_get_a_reason_and_the_server_keeps_running(component, stage_factory, tmp_path):
    stage = stage_factory(
        app_module=str(TRANSFORM_APP),
        reader_env={
            "STREAMPOD_INPUT_KIND": "file",
            "STREAMPOD_INPUT_FILE": str(tmp_path / "none.jsonl"),
            "STREAMPOD_EXIT_AT_END": "false",
        },
        writer_env={"STREAMPOD_OUTPUT_KIND": "file", "STREAMPOD_OUTPUT_FILE": str(tmp_path / "out.jsonl")},
    )
    (tmp_path / "none.jsonl").write_text("")
    stage.start_component("output-writer")
    stage.start_component("app")
    port = stage.ports.app if component == "app" else stage.ports.writer
    url = f"http://127.0.0.1:{port}/v1/messages"
    cases = [
        (b"not json", 400),
        (b'{"messages": "nope"}', 400),
        (b'{"messages": [{"id": 1, "value": 2}]}', 400),
        (b'{"messages": [{"id": "a"}, {"id": "a"}]}', 400),
        (b'{"messages": [{"id": "a", "headers": {"h": 5}}]}', 400),
    ]
    for body, want in cases:
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, reply = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, reply = exc.code, exc.read()
        assert status == want, (body[:60], status, reply[:200])
        assert b"error" in reply
    # A huge body is refused from its declared length, before the server reads it.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", "/v1/messages")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(64 * 1024 * 1024))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413
    assert b"error" in resp.read()
    conn.close()
    assert stage[component].get("/healthz")[0] == 200
