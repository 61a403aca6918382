"""streampod.localpod: a rendered pod becomes processes with a consistent local network and Secret files."""

from __future__ import annotations

from pathlib import Path

import pytest

from streampod import chart
from streampod.chart import by_kind
from streampod.localpod import LocalCluster, TranslationError

SASL = {
    "input": {"topics": ["orders"], "consumerGroup": "scorer"},
    "output": {"topic": "scored"},
    "kafka": {
        "bootstrapServers": "127.0.0.1:9",
        "securityProtocol": "SASL_PLAINTEXT",
        "sasl": {"mechanism": "PLAIN", "username": "u", "password": "pw-123"},
    },
}


def test_ports_are_remapped_consistently_and_secrets_become_files(tmp_path: Path) -> None:
    manifests = chart.render(SASL, tests=False)
    cluster = LocalCluster(tmp_path)
    d = by_kind(manifests, "Deployment")[0]
    secrets = {"stage-streampod": {"kafka-sasl-password": "pw-123"}}
    pod = cluster.make_pod(d["metadata"]["name"], d, secrets)
    env = {c.name: c.component.env for c in pod.containers}
    assert [c.name for c in pod.containers] == ["output-writer", "app", "input-reader"]
    assert [c.sidecar for c in pod.containers] == [True, True, False]
    reader, app, writer = env["input-reader"], env["app"], env["output-writer"]
    assert reader["STREAMPOD_APP_URL"] == f"http://127.0.0.1:{app['STREAMPOD_APP_PORT']}"
    assert app["STREAMPOD_OUTPUT_URL"] == f"http://127.0.0.1:{writer['STREAMPOD_WRITER_PORT']}"
    ports = [
        reader["STREAMPOD_OPS_PORT"],
        app["STREAMPOD_OPS_PORT"],
        app["STREAMPOD_APP_PORT"],
        writer["STREAMPOD_OPS_PORT"],
        writer["STREAMPOD_WRITER_PORT"],
    ]
    assert len(set(ports)) == 5 and not {"9090", "9091", "9092", "8080", "8081"} & set(ports)
    for c in pod.containers:
        assert c.component.ops_port == int(c.component.env["STREAMPOD_OPS_PORT"])
        assert c.component.env["STREAMPOD_OPS_HOST"] == "127.0.0.1"
        assert (c.startup, c.readiness) == ("/healthz", "/readyz")
    password = Path(reader["STREAMPOD_KAFKA_SASL_PASSWORD_FILE"])
    assert password.is_relative_to(tmp_path) and password.read_text() == "pw-123"
    assert "STREAMPOD_KAFKA_SASL_PASSWORD_FILE" not in app
    # The app image's own ENV comes from its Dockerfile; the chart's env wins over it.
    assert app["PYTHONUNBUFFERED"] == "1" and app["STREAMPOD_APP_MODULE"] == "/app/app.py"


def test_what_cannot_run_locally_is_refused(tmp_path: Path) -> None:
    d = by_kind(chart.render(SASL, tests=False), "Deployment")[0]
    with pytest.raises(TranslationError, match="neither rendered nor given"):
        LocalCluster(tmp_path).make_pod("x", d, {})
    d["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}
    )
    with pytest.raises(TranslationError, match="env X comes from"):
        LocalCluster(tmp_path / "2").make_pod("x", d, {"stage-streampod": {"kafka-sasl-password": "p"}})
