"""The JSON-lines log format every container writes on stdout."""

from __future__ import annotations

import logging
import sys

import orjson

from streampod.logs import JsonFormatter


def _line(record: logging.LogRecord) -> dict[str, object]:
    parsed: dict[str, object] = orjson.loads(JsonFormatter("app").format(record))
    return parsed


def test_a_line_carries_the_extras_and_not_uvicorns_colour_codes() -> None:
    record = logging.makeLogRecord(
        {
            "name": "uvicorn.error",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "Started server process [%d]",
            "args": (42,),
            "color_message": "Started server process [\x1b[36m%d\x1b[0m]",
            "partition": 3,
        }
    )
    line = _line(record)
    assert line["msg"] == "Started server process [42]"
    assert line["component"] == "app" and line["level"] == "info" and line["logger"] == "uvicorn.error"
    assert line["partition"] == 3
    assert "color_message" not in line
    assert str(line["ts"]).endswith("Z")


def test_an_exception_is_one_field_of_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord("x", logging.ERROR, "f", 1, "failed", (), sys.exc_info())
    line = _line(record)
    assert line["msg"] == "failed" and "ValueError: boom" in str(line["exc"])
