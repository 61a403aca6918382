"""pytest fixtures for a real Kafka broker, from :mod:`streampod.localkafka`.

Load it from a conftest with ``pytest_plugins = ["streampod.pytest_kafka"]``.

- ``kafka_broker`` (session): one started :class:`~streampod.localkafka.LocalKafka` for the run.
- ``topic_factory`` (function): ``topic_factory(partitions=1, prefix="t") -> name`` creates a
  topic with a unique name, ready to use, and deletes it after the test.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest

from streampod.localkafka import LocalKafka, create_topic, delete_topic

log = logging.getLogger(__name__)


class TopicFactory(Protocol):
    def __call__(self, partitions: int = 1, prefix: str = "t") -> str: ...


def _announce(config: pytest.Config, line: str) -> None:
    # Fixture output is captured and shown only on failure; which broker ran belongs in every log.
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    disabled = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
    with disabled:
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line)


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest) -> Iterator[LocalKafka]:
    with LocalKafka() as kafka:
        line = f"streampod: Kafka broker kind={kafka.kind} bootstrap={kafka.bootstrap_servers}"
        _announce(request.config, line)
        yield kafka


@pytest.fixture
def topic_factory(kafka_broker: LocalKafka) -> Iterator[TopicFactory]:
    created: list[str] = []

    def make(partitions: int = 1, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        create_topic(kafka_broker.bootstrap_servers, name, partitions)
        created.append(name)
        return name

    yield make
    for name in created:
        # Best effort: a failed fault test may have left the broker down, and that is its report.
        try:
            delete_topic(kafka_broker.bootstrap_servers, name)
        except Exception:
            log.warning("could not delete test topic %s", name, exc_info=True)
