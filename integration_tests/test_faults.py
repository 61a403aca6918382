"""Faults mid-stream: kill -9 of each container, and the broker stopped and started again.

Input is produced while the faults happen; afterwards every input must be in the output (the
number of duplicates is measured and printed: at-least-once allows them, and they show the cost).
"""

from __future__ import annotations

import threading
import time

import pytest
from pipeline_support import TRANSFORM_APP, check_complete_and_ordered, keyed_values, produce, read_all

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _produce_slowly(boot: str, topic: str, inputs, seconds: float) -> threading.Thread:  # type: ignore[no-untyped-def]
    """Produce ``inputs`` in chunks spread over ``seconds``, from a thread."""

    def run() -> None:
        chunks = 20
        size = -(-len(inputs) // chunks)
        for i in range(chunks):
            produce(boot, topic, inputs[i * size : (i + 1) * size])
            time.sleep(seconds / chunks)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_kill_9_of_each_container_mid_stream_loses_nothing(kafka_broker, topic_factory, kafka_env, stage_factory):
    boot = kafka_broker.bootstrap_servers
    t_in, t_out = topic_factory(4, "in"), topic_factory(4, "out")
    env = kafka_env(t_in, t_out, reader={"STREAMPOD_COMMIT_INTERVAL_MS": "200"})
    inputs = keyed_values(6000, keys=200)
    stage = stage_factory(app_module=str(TRANSFORM_APP), **env)
    stage.start()
    producer = _produce_slowly(boot, t_in, inputs, seconds=12)
    for component in ("app", "output-writer", "input-reader"):
        time.sleep(2.5)
        stage.restart(component)
    producer.join(60)
    outputs = read_all(boot, [t_out], len(inputs), timeout=180)
    dups = check_complete_and_ordered(outputs, inputs)
    print(
        f"\nkill -9 of app, output writer and input reader: {len(inputs)} inputs, "
        f"{len(outputs)} outputs, {dups} duplicate(s) ({100 * dups / len(inputs):.1f} %)"
    )


def test_broker_stopped_for_seconds_mid_stream_loses_nothing(kafka_broker, topic_factory, kafka_env, stage_factory):
    if kafka_broker.kind != "jars":
        pytest.skip(f"stopping the broker needs the broker process of this machine, not kind={kafka_broker.kind}")
    boot = kafka_broker.bootstrap_servers
    t_in, t_out = topic_factory(2, "in"), topic_factory(2, "out")
    env = kafka_env(t_in, t_out)
    first, second = keyed_values(4000, keys=100)[:2000], keyed_values(4000, keys=100)[2000:]
    produce(boot, t_in, first)
    stage = stage_factory(app_module=str(TRANSFORM_APP), **env)
    stage.start()
    time.sleep(1.0)  # mid-stream: part of the first half is through
    kafka_broker.stop_broker_process()
    time.sleep(6)
    kafka_broker.start_broker_process()
    produce(boot, t_in, second)
    outputs = read_all(boot, [t_out], 4000, timeout=180)
    dups = check_complete_and_ordered(outputs, first + second)
    print(f"\nbroker down for 6 s: 4000 inputs, {len(outputs)} outputs, {dups} duplicate(s)")
    assert all(stage[c].alive() for c in ("input-reader", "app", "output-writer"))


def test_rebalance_between_two_readers_loses_nothing_and_keeps_order(
    kafka_broker, topic_factory, kafka_env, stage_factory
):
    """A second stage joins the group mid-stream, then the first is stopped: partitions move twice."""
    boot = kafka_broker.bootstrap_servers
    t_in, t_out = topic_factory(4, "in"), topic_factory(4, "out")
    env = kafka_env(t_in, t_out, group="rebalance", reader={"STREAMPOD_COMMIT_INTERVAL_MS": "200"})
    inputs = keyed_values(6000, keys=200)
    first = stage_factory(app_module=str(TRANSFORM_APP), **env)
    first.start()
    producer = _produce_slowly(boot, t_in, inputs, seconds=10)
    time.sleep(3)
    second = stage_factory(app_module=str(TRANSFORM_APP), **env)
    second.start()
    time.sleep(3)
    assert first.stop()["input-reader"] == 0
    producer.join(60)
    outputs = read_all(boot, [t_out], len(inputs), timeout=180)
    dups = check_complete_and_ordered(outputs, inputs)
    print(f"\ntwo rebalances: {len(inputs)} inputs, {len(outputs)} outputs, {dups} duplicate(s)")


def test_a_slow_app_pauses_partitions_and_the_reader_stays_in_its_group(
    kafka_broker, topic_factory, kafka_env, stage_factory
):
    """The app takes far longer than max.poll.interval.ms in all: the reader must keep polling (paused)."""
    import sys

    from pipeline_support import STDLIB_APP

    boot = kafka_broker.bootstrap_servers
    t_in, t_out = topic_factory(2, "in"), topic_factory(2, "out")
    env = kafka_env(
        t_in,
        t_out,
        reader={
            "STREAMPOD_BATCH_MAX_MESSAGES": "50",
            "STREAMPOD_MAX_BUFFERED_PER_PARTITION": "100",
            "STREAMPOD_KAFKA_EXTRA_CONFIG": '{"max.poll.interval.ms": "6000", "session.timeout.ms": "6000"}',
        },
    )
    stage = stage_factory(app_argv=[sys.executable, str(STDLIB_APP)], **env)
    stage["app"].env.update(
        APP_PORT=str(stage.ports.app),
        OPS_PORT=str(stage.ports.app_ops),
        MODE="batch",
        DELAY_SECONDS="0.8",
        OUTPUT_URL=f"http://127.0.0.1:{stage.ports.writer}",
    )
    inputs = keyed_values(1600, keys=40)
    produce(boot, t_in, inputs)
    stage.start()
    paused_seen = 0.0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and paused_seen == 0:
        _, text = stage["input-reader"].get("/metrics")
        paused_seen = max(
            (float(line.split()[-1]) for line in text.splitlines() if line.startswith("streampod_reader_paused")),
            default=0.0,
        )
        time.sleep(0.2)
    assert paused_seen > 0, "the reader never paused a partition for the slow app"
    outputs = read_all(boot, [t_out], len(inputs), timeout=120)
    dups = check_complete_and_ordered(outputs, inputs)
    log = stage["input-reader"].log_path.read_text()
    assert "partitions lost" not in log
    assert "revoked" not in log
    assert dups == 0
