"""Finding the user's code: a module, ``package.module:attribute`` or a path to a .py file.

The hooks are looked up once, at start: ``process(message)`` or ``process_batch(messages)``,
optionally ``setup()`` (or ``setup(settings)``), ``INPUT_SCHEMA`` and ``InputModel``. A name that cannot be found is a
ConfigError (exit 2: the deployment is wrong); an exception raised while importing the user's
module is the user's code failing and propagates as it is (exit 1, with its traceback).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import itertools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from streampod.errors import ConfigError
from streampod.settings import AppSettings

from ._validate import Validator, chain, model_validator, read_schema, schema_validator

_ENV = "STREAMPOD_APP_MODULE"
_names = itertools.count(1)


@dataclass(eq=False)
class UserApp:
    """The user's hooks, found once at start."""

    name: str
    module: ModuleType
    process: Callable[..., Any] | None
    process_batch: Callable[..., Any] | None
    setup: Callable[..., Any] | None = None
    validate: Validator | None = None
    is_async: bool = False
    setup_done: bool = field(default=False, init=False)

    async def run_setup(self, settings: AppSettings | None = None) -> None:
        """Run the user's ``setup()`` once (awaited when it is a coroutine function).

        A ``setup(settings)`` that takes one argument gets the container's AppSettings (to find
        ``settings.model_path``); AppHarness passes its own, so a test can point it elsewhere.
        """
        if self.setup is not None and not self.setup_done:
            result = self.setup(settings) if _takes_argument(self.setup) else self.setup()
            if inspect.isawaitable(result):
                await result
        self.setup_done = True


def load_user_app(spec: str, input_schema: Path | None = None) -> UserApp:
    """Import the user's code named by ``spec`` and find its hooks."""
    module_part, _, attr = spec.partition(":") if not _is_path(spec) else (spec, "", "")
    module = _import_path(Path(spec)) if _is_path(spec) else _import_name(module_part)
    holder: Any = module
    if attr:
        try:
            holder = getattr(module, attr)
        except AttributeError:
            raise ConfigError(f"{_ENV}: module {module_part!r} has no attribute {attr!r}") from None
        if inspect.isclass(holder):
            holder = holder()
    if attr and inspect.isroutine(holder):
        process: Callable[..., Any] | None = holder
        process_batch = None
        holder = module
    else:
        process = _hook(holder, "process")
        process_batch = _hook(holder, "process_batch")
    if process is None and process_batch is None:
        raise ConfigError(f"{_ENV}: {spec!r} defines neither process(message) nor process_batch(messages)")
    if process_batch is not None:
        # A module may keep process() as the per-record helper of its process_batch().
        process = None
    fn = process_batch or process
    return UserApp(
        name=spec,
        module=module,
        process=process,
        process_batch=process_batch,
        setup=_hook(holder, "setup"),
        validate=_validator(holder, input_schema),
        is_async=_is_async(fn),
    )


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional or p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def _is_async(fn: Any) -> bool:
    # A callable object with an ``async def __call__`` is async too.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def _hook(holder: Any, name: str) -> Callable[..., Any] | None:
    fn = getattr(holder, name, None)
    if fn is None:
        return None
    if not callable(fn):
        raise ConfigError(f"{_ENV}: {name} is defined but is not a function")
    return fn  # type: ignore[no-any-return]


def _validator(holder: Any, input_schema: Path | None) -> Validator | None:
    validators: list[Validator] = []
    if input_schema is not None:
        validators.append(schema_validator(read_schema(input_schema), "STREAMPOD_INPUT_SCHEMA"))
    else:
        schema = getattr(holder, "INPUT_SCHEMA", None)
        if schema is not None:
            if not isinstance(schema, dict):
                raise ConfigError(f"{_ENV}: INPUT_SCHEMA must be a dict holding a JSON Schema")
            validators.append(schema_validator(schema, "INPUT_SCHEMA"))
    model = getattr(holder, "InputModel", None)
    if model is not None:
        validators.append(model_validator(model, "InputModel"))
    return chain(validators)


def _import_name(name: str) -> ModuleType:
    # The console script does not put the working directory on sys.path; `python -m` does.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        found = importlib.util.find_spec(name)
    except (ModuleNotFoundError, ValueError):
        found = None
    if found is None:
        raise ConfigError(f"{_ENV}: no module named {name!r} (from {cwd})")
    return importlib.import_module(name)


def _import_path(path: Path) -> ModuleType:
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"{_ENV}: no file {path}")
    # The user's file may import its neighbours (helpers, a model file loader).
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    # Never shadow a module already imported (a user file called json.py, or a second load).
    name = path.stem if path.stem not in sys.modules else f"_streampod_user_{path.stem}_{next(_names)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{_ENV}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
