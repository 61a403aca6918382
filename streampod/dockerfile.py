"""Just enough of a Dockerfile reader to replay an image's build steps and entrypoint without Docker.

The build machines have no Docker engine, so the tests run what the Dockerfiles say instead: the
build stage's COPY and RUN instructions in a scratch folder and a fresh virtual environment, and the
final stage's ENV and exec-form ENTRYPOINT. Only the forms our Dockerfiles use are understood
(``ARG name=default``, ``ENV k=v ...``, ``COPY src... dst``, ``RUN``, ``WORKDIR``, JSON
``ENTRYPOINT``); anything else in a stage being replayed is an error, not silently skipped.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str]  # global ARG defaults (before the first FROM)
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"{self.path}: no stage named {name!r}")

    def stage_args(self, stage: Stage) -> dict[str, str]:
        """ARG defaults visible in ``stage``: the global ones re-declared there, and its own."""
        out: dict[str, str] = {}
        for ins in stage.instructions:
            if ins.keyword == "ARG":
                name, _, default = ins.args.partition("=")
                out[name] = self.substitute(default, out) if default else self.args.get(name, "")
        return out

    def substitute(self, text: str, variables: dict[str, str]) -> str:
        return _VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)

    def env(self, stage: Stage) -> dict[str, str]:
        """The ENV of ``stage`` (``$VAR`` left as written where it names no ARG or earlier ENV)."""
        variables = self.stage_args(stage)
        out: dict[str, str] = {}
        for ins in stage.instructions:
            if ins.keyword == "ENV":
                for pair in shlex.split(ins.args):
                    key, _, value = pair.partition("=")
                    out[key] = self.substitute(value, {**variables, **out})
        return out

    def entrypoint(self) -> list[str]:
        for ins in reversed(self.final.instructions):
            if ins.keyword == "ENTRYPOINT":
                argv = json.loads(ins.args)
                if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                    raise ValueError(f"{self.path}:{ins.line}: ENTRYPOINT must be the exec (JSON) form")
                return argv
        raise ValueError(f"{self.path}: no ENTRYPOINT")


def parse(path: Path) -> Dockerfile:
    """Read ``path`` into stages of instructions (continuation lines joined, comments dropped)."""
    logical: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append((start, pending + stripped))
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, rest = text.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=Dockerfile(path, args, []).substitute(words[0], args), name=name))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"{path}:{number}: only ARG may come before FROM")
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, rest, number))
    if not stages:
        raise ValueError(f"{path}: no FROM")
    return Dockerfile(path, args, stages)


# Absolute paths of the image that a replay maps into its scratch root.
_IMAGE_PATH = re.compile(r"(?<![\w./-])/(opt|app|src)(?=[/\s\"':]|$)")
# Final-stage RUN lines that only set up the image's user: nothing to replay outside a container.
_USER_SETUP = re.compile(r"^(groupadd|useradd)\b")


@dataclass
class LocalImage:
    """An image replayed into ``root``, a folder that stands for its root filesystem."""

    dockerfile: Dockerfile
    root: Path

    def map(self, text: str) -> str:
        return _IMAGE_PATH.sub(lambda m: f"{self.root}/{m.group(1)}", text)

    def env(self, host_path: str) -> dict[str, str]:
        """The final stage's ENV, image paths mapped, ``$PATH`` as the host's."""
        final = self.dockerfile.env(self.dockerfile.final)
        return {k: self.map(v).replace("$PATH", host_path) for k, v in final.items()}

    def argv(self, host_path: str) -> list[str]:
        """The ENTRYPOINT, its program looked up on the image's PATH."""
        argv = self.dockerfile.entrypoint()
        for folder in self.env(host_path).get("PATH", host_path).split(":"):
            candidate = Path(folder) / argv[0]
            if candidate.is_file():
                return [str(candidate), *argv[1:]]
        raise FileNotFoundError(f"{self.dockerfile.path}: {argv[0]} is not on the image's PATH")


def replay(
    dockerfile: Dockerfile,
    context: Path,
    root: Path,
    *,
    python: str,
    run: Callable[[str, Path, dict[str, str]], None],
    skip_env: Sequence[str] = (),
) -> LocalImage:
    """Replay every stage's instructions into ``root``: COPY from ``context``, RUN through ``run``.

    ``run(command, cwd, env)`` executes one RUN line (image paths already mapped); ``python`` is the
    interpreter a bare ``python`` in it means. ``skip_env`` names build ENV entries left out (e.g.
    PIP_NO_CACHE_DIR, so that a test may use pip's cache). ``COPY --from`` is a no-op: all stages
    share the one root.
    """
    image = LocalImage(dockerfile, root)
    shim = root / ".python-shim"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "python").unlink(missing_ok=True)
    (shim / "python").symlink_to(python)
    for stage in dockerfile.stages:
        variables = dockerfile.stage_args(stage)
        env: dict[str, str] = {}
        cwd = root
        for ins in stage.instructions:
            text = dockerfile.substitute(ins.args, {**variables, **env})
            where = f"{dockerfile.path}:{ins.line}"
            if ins.keyword in ("ARG", "LABEL", "USER", "EXPOSE", "ENTRYPOINT", "CMD"):
                continue
            if ins.keyword == "ENV":
                for pair in shlex.split(text):
                    key, _, value = pair.partition("=")
                    if key not in skip_env:
                        env[key] = image.map(value)
            elif ins.keyword == "WORKDIR":
                cwd = Path(image.map(text))
                cwd.mkdir(parents=True, exist_ok=True)
            elif ins.keyword == "COPY":
                words = shlex.split(text)
                if words[0].startswith("--from="):
                    continue
                if any(w.startswith("--") for w in words):
                    raise ValueError(f"{where}: COPY options other than --from are not replayed")
                *sources, dest = words
                target = Path(image.map(dest)) if dest.startswith("/") else cwd / dest
                for src in sources:
                    _copy(context / src, target, many=len(sources) > 1 or dest.endswith("/"))
            elif ins.keyword == "RUN":
                if stage is dockerfile.final and _USER_SETUP.match(text):
                    continue
                path = f"{shim}:{env.get('PATH', '$PATH')}"
                run(image.map(text), cwd, {**env, "PATH": path})
            else:
                raise ValueError(f"{where}: {ins.keyword} is not replayed")
    return image


def _copy(src: Path, dest: Path, *, many: bool) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True, ignore=ignore)
    else:
        target = dest / src.name if many or dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
