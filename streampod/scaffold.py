"""``streampod new NAME --template {python,sklearn,pyspark}``: a project folder for one pipeline stage.

The folder holds the app from the template, its tests and sample messages, a README with the
exact commands, a Dockerfile, the Helm values and, for the model templates, the model itself
(``train.py`` is run once, so the project's tests and ``streampod run`` work at once). The
templates ship inside streampod (``streampod.templates``), so this works from an installed
streampod as well as from a checkout.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from streampod.errors import ConfigError

TEMPLATES = ("python", "sklearn", "pyspark")
#: Azure DevOps pipeline files for a generated project (app_template/pipelines): copied (rendered) into
#: ``pipelines/``; they use the streampod repository's ci/templates (docs/azure-devops.md).
PIPELINES = "pipelines"
PLACEHOLDER = "{{name}}"

# NAME becomes the Helm release, the image repository and the topics' prefix: a DNS-1123 label,
# short enough for the chart to add its suffixes within Kubernetes' 63 characters.
_NAME = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?")
_RENDERED_SUFFIXES = (".md", ".yaml", ".yml", ".txt", "Dockerfile")
# What a template folder in a checkout may hold besides the template: build products of its use.
_SKIPPED = {"__pycache__", ".pytest_cache", "model", "out.jsonl", "out.jsonl.deadletter.jsonl"}


def templates_root() -> Traversable:
    """The folder holding the templates, inside the installed streampod."""
    return resources.files("streampod.templates")


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"NAME {name!r}: use 1-40 lower-case letters, digits and '-', starting with a letter and not ending "
            "with '-' (it names the Helm release, the image and the topics)"
        )


def generate(
    name: str,
    template: str,
    into: Path,
    *,
    force: bool = False,
    root: Traversable | None = None,
) -> list[Path]:
    """Write the project ``into/name`` from ``template``; the files written, in order."""
    check_name(name)
    root = root if root is not None else templates_root()
    if template not in TEMPLATES or not root.joinpath(template).is_dir():
        raise ConfigError(f"--template {template!r}: choose one of {', '.join(TEMPLATES)}")
    target = into / name
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists: choose another NAME or --dir, or pass --force to overwrite")
    written = _copy(root.joinpath(template), target, name)
    pipelines = root.joinpath(PIPELINES)
    if pipelines.is_dir():
        written += _copy(pipelines, target / PIPELINES, name)
    return written


def _copy(src: Traversable, dst: Path, name: str) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for item in sorted(src.iterdir(), key=lambda t: t.name):
        if item.name in _SKIPPED or item.name.endswith((".pyc", ".pyo")):
            continue
        out = dst / item.name
        if item.is_dir():
            written += _copy(item, out, name)
            continue
        data = item.read_bytes()
        if item.name.endswith(_RENDERED_SUFFIXES):
            data = data.replace(PLACEHOLDER.encode(), name.encode())
        out.write_bytes(data)
        if isinstance(item, Path) and item.stat().st_mode & 0o111:
            out.chmod(0o755)  # the pipelines' scripts
        written.append(out)
    return written


def train(project: Path, timeout_s: float = 600.0) -> None:
    """Run the project's train.py once, in the project, so that its model/ exists."""
    subprocess.run([sys.executable, "train.py"], cwd=project, check=True, timeout=timeout_s)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="streampod new",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", metavar="NAME", help="the stage's name: lower-case letters, digits and '-'")
    p.add_argument("--template", choices=TEMPLATES, default="python", help="the kind of app (default: python)")
    p.add_argument("--dir", type=Path, default=Path(), help="where to create the NAME folder (default: here)")
    p.add_argument("--force", action="store_true", help="write into an existing NAME folder, overwriting its files")
    p.add_argument("--no-train", action="store_true", help="do not run train.py (the model templates)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    try:
        written = generate(args.name, args.template, args.dir, force=args.force)
    except ConfigError as exc:
        print(f"streampod new: {exc}", file=sys.stderr)
        return 2
    project = args.dir / args.name
    print(f"streampod new: {len(written)} files of the {args.template} template written to {project}")
    if (project / "train.py").exists() and not args.no_train:
        print("streampod new: training the example model (python train.py) ...")
        try:
            train(project)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            print(
                f"streampod new: train.py failed ({exc}); install the project's requirements.txt, "
                f"then run `python train.py` in {project}",
                file=sys.stderr,
            )
            return 1
    if not (project / PIPELINES).exists():
        print("streampod new: no Azure DevOps pipelines yet (this streampod does not ship them)")
    print(f"next: cd {project} && pytest   (then README.md)")
    return 0
