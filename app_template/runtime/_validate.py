"""Input validation declared by the user: a JSON Schema, a pydantic model, or both.

A validator takes a decoded value and returns what the user's code receives (the value itself,
or the model instance); an invalid value raises Reject with a reason that names the field, so
the dead-letter record says what to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from streampod.errors import ConfigError

from ._message import Reject

Validator = Callable[[Any], Any]

_MAX_ERRORS = 3
_MAX_REASON = 300


def _path(parts: Iterable[str | int]) -> str:
    out = "value"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def read_schema(path: Path) -> dict[str, Any]:
    try:
        schema = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"STREAMPOD_INPUT_SCHEMA: cannot read a JSON Schema from {path}: {exc}") from None
    if not isinstance(schema, dict):
        raise ConfigError(f"STREAMPOD_INPUT_SCHEMA: {path} does not hold a JSON object")
    return schema


def schema_validator(schema: Mapping[str, Any], origin: str) -> Validator:
    """A validator for a JSON Schema (needs the ``app`` extra: jsonschema)."""
    try:
        from jsonschema import exceptions, validators
    except ImportError:
        raise ConfigError(
            f"{origin}: a JSON Schema needs the jsonschema package (pip install 'streampod[app]')"
        ) from None
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as exc:
        raise ConfigError(f"{origin}: not a valid JSON Schema: {exc.message}") from None
    checker = cls(schema)

    def validate(value: Any) -> Any:
        err = exceptions.best_match(checker.iter_errors(value))
        if err is not None:
            raise Reject(_clip(f"{_path(err.absolute_path)}: {err.message}"))
        return value

    return validate


def model_validator(model: Any, origin: str) -> Validator:
    """A validator for a pydantic model (or any type pydantic validates); returns the instance."""
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(model)
    except Exception as exc:
        raise ConfigError(f"{origin}: pydantic cannot validate {model!r}: {exc}") from None

    def validate(value: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            # include_input=False: the reason goes into logs and headers, the payload must not.
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            parts = [f"{_path(e['loc'])}: {e['msg']}" for e in errors[:_MAX_ERRORS]]
            if len(errors) > _MAX_ERRORS:
                parts.append(f"and {len(errors) - _MAX_ERRORS} more")
            raise Reject(_clip("; ".join(parts))) from None

    return validate


def chain(validators: list[Validator]) -> Validator | None:
    if not validators:
        return None
    if len(validators) == 1:
        return validators[0]

    def validate(value: Any) -> Any:
        for v in validators:
            value = v(value)
        return value

    return validate
