"""The one transform every variant runs: parse a JSON value, add a field, serialise.

Standard library and orjson only: the Quix Streams variant loads this file by path in its own
virtual environment, where streampod is not installed.
"""

from __future__ import annotations

from typing import Any

import orjson


def enrich(value: dict[str, Any]) -> dict[str, Any]:
    """Add one field. A new dict, so that no framework sees its own input object change."""
    return {**value, "processed": True}


def transform(raw: bytes) -> bytes:
    """The whole job for variants that handle bytes themselves (baseline, in-process)."""
    return orjson.dumps(enrich(orjson.loads(raw)))
