"""``streampod new``: names, overwriting, rendering, and the pipelines hook (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streampod.cli import main as cli_main
from streampod.errors import ConfigError
from streampod.scaffold import PLACEHOLDER, TEMPLATES, check_name, generate, templates_root

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["a", "fraud-scorer", "iris2", "x" * 40])
def test_good_names(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize("name", ["", "Fraud", "2fast", "-a", "a-", "a_b", "a.b", "../up", "x" * 41, "a b"])
def test_bad_names_are_refused_saying_what_a_name_is(name: str) -> None:
    with pytest.raises(ConfigError, match="lower-case letters, digits and '-'"):
        check_name(name)


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_project_holds_the_template_with_its_name_filled_in(template: str, tmp_path: Path) -> None:
    written = generate("my-stage", template, tmp_path)
    project = tmp_path / "my-stage"
    names = {p.relative_to(project).as_posix() for p in written}
    assert {"app.py", "samples.jsonl", "README.md", "Dockerfile", "values.yaml", ".gitignore"} <= names
    assert any(n.startswith("tests/test_") for n in names)
    assert not any("__pycache__" in n or n.startswith("model/") for n in names)
    for path in written:
        assert PLACEHOLDER not in path.read_text(), f"{path} still holds {PLACEHOLDER}"
    values = yaml.safe_load((project / "values.yaml").read_text())
    assert values["images"]["app"]["repository"] == "my-stage/app"
    assert values["input"]["consumerGroup"] == "my-stage"
    # Code is copied byte for byte (only docs, values and the Dockerfile are rendered).
    assert (project / "app.py").read_bytes() == (REPO / "app_template" / template / "app.py").read_bytes()


def test_an_existing_folder_is_kept_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "app.py").write_text("mine")
    with pytest.raises(ConfigError, match=r"already exists.*--force"):
        generate("taken", "python", tmp_path)
    assert (tmp_path / "taken" / "app.py").read_text() == "mine"
    generate("taken", "python", tmp_path, force=True)
    assert (tmp_path / "taken" / "app.py").read_text() != "mine"


def test_an_unknown_template_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="choose one of python, sklearn, pyspark"):
        generate("a", "tensorflow", tmp_path)


def test_the_pipelines_hook_copies_and_renders_pipeline_files_when_the_templates_have_them(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    (root / "python").mkdir(parents=True)
    (root / "python" / "app.py").write_text("def process(m):\n    return m.value\n")
    (root / "pipelines").mkdir()
    (root / "pipelines" / "azure-pipelines.yml").write_text("variables:\n  image: {{name}}/app\n")
    generate("stage-a", "python", tmp_path / "out", root=root)
    assert (tmp_path / "out" / "stage-a" / "pipelines" / "azure-pipelines.yml").read_text() == (
        "variables:\n  image: stage-a/app\n"
    )


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["new", "Bad_Name", "--dir", str(tmp_path)]) == 2
    assert "NAME 'Bad_Name'" in capsys.readouterr().err
    assert cli_main(["new", "plain", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "files of the python template written to" in out
    assert "no Azure DevOps pipelines yet" not in out
    assert (tmp_path / "plain" / "pipelines" / "release-pipeline.yml").exists()
    assert (tmp_path / "plain" / "app.py").exists()
    assert cli_main(["new", "plain", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_the_templates_are_found_through_the_package() -> None:
    root = templates_root()
    for template in TEMPLATES:
        assert root.joinpath(template, "app.py").is_file()
