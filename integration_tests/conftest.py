from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streampod.localkafka import LocalKafka
from streampod.stage import LocalStage

pytest_plugins = ["streampod.pytest_kafka", "streampod.pytest_azurite"]


@pytest.fixture
def stage_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., LocalStage]]:
    """Build LocalStages that are stopped after the test; their logs are printed if the test failed."""
    stages: list[LocalStage] = []

    def make(**kwargs: Any) -> LocalStage:
        stage = LocalStage(tmp_path / f"stage-{len(stages)}", **kwargs)
        stages.append(stage)
        return stage

    yield make
    for stage in stages:
        stage.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for stage in stages:
            print(stage.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


@pytest.fixture
def kafka_env(kafka_broker: LocalKafka) -> Callable[..., dict[str, dict[str, str]]]:
    """Settings for a Kafka-to-Kafka stage: reader and writer environments."""

    def make(
        topic_in: str,
        topic_out: str,
        *,
        group: str | None = None,
        dlq: str | None = None,
        reader: dict[str, str] | None = None,
        writer: dict[str, str] | None = None,
    ) -> dict[str, dict[str, str]]:
        boot = kafka_broker.bootstrap_servers
        return {
            "reader_env": {
                "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS": boot,
                "STREAMPOD_INPUT_TOPICS": topic_in,
                "STREAMPOD_CONSUMER_GROUP": group or f"g-{uuid.uuid4().hex[:8]}",
                **({"STREAMPOD_DEAD_LETTER_TOPIC": dlq} if dlq else {}),
                **(reader or {}),
            },
            "writer_env": {
                "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS": boot,
                "STREAMPOD_OUTPUT_TOPIC": topic_out,
                **(writer or {}),
            },
        }

    return make
