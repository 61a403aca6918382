"""A bad setting stops each container at start with one message naming every bad variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPOD_")}
    return subprocess.run(
        [sys.executable, "-m", "streampod", command], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("command", "env", "names"),
    [
        (
            "input-reader",
            {},
            ["STREAMPOD_KAFKA_BOOTSTRAP_SERVERS", "STREAMPOD_CONSUMER_GROUP", "STREAMPOD_INPUT_TOPICS"],
        ),
        (
            "input-reader",
            {
                "STREAMPOD_BATCH_MAX_MESSAGES": "many",
                "STREAMPOD_ENCODING": "xml",
                "STREAMPOD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            },
            [
                "STREAMPOD_BATCH_MAX_MESSAGES",
                "STREAMPOD_ENCODING",
                "STREAMPOD_KAFKA_SASL_USERNAME",
                "STREAMPOD_CONSUMER_GROUP",
            ],
        ),
        (
            "output-writer",
            {"STREAMPOD_WRITER_PORT": "99999"},
            ["STREAMPOD_WRITER_PORT", "STREAMPOD_OUTPUT_TOPIC", "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS"],
        ),
        (
            "app",
            {"STREAMPOD_APP_PORT": "http", "STREAMPOD_OUTPUT_URL": "not a url"},
            ["STREAMPOD_APP_PORT", "STREAMPOD_OUTPUT_URL"],
        ),
    ],
)
def test_bad_settings_give_one_message_naming_every_variable(command, env, names):
    proc = run(command, env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert "Traceback" not in proc.stderr


def test_secrets_never_appear_in_the_error():
    proc = run(
        "input-reader",
        {
            "STREAMPOD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "STREAMPOD_KAFKA_SASL_PASSWORD": "hunter2-secret",
            "STREAMPOD_BATCH_MAX_BYTES": "x",
        },
    )
    assert proc.returncode == 2
    assert "hunter2-secret" not in proc.stderr + proc.stdout
