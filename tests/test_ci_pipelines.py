"""The Azure DevOps pipelines, checked offline: Microsoft's schema (check-jsonschema's built-in
vendor.azure-pipelines, with only ci/schema-allowlist.yaml's rules applied) and what the schema
cannot see: helm steps atomic, waited and timed; no literal secrets; publishing only from main;
every script a pipeline runs exists and is executable; the same for a project `streampod new` writes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streampod import release
from streampod.scaffold import generate

REPO = Path(__file__).resolve().parent.parent
CI = REPO / "ci"
ALLOW = yaml.safe_load((CI / "schema-allowlist.yaml").read_text())
_IF = re.compile(r"^\$\{\{\s*(if|elseif|else)\b.*\}\}$")
_SECRETISH = re.compile(r"(password|secret|token|connectionstring|accountkey|sas)", re.IGNORECASE)


def pipeline_files(root: Path) -> list[Path]:
    return sorted([*root.glob("*.yml"), *root.glob("templates/*.yml")])


def _expand(node: Any) -> Any:
    """Conditional insertion inlined, every branch (ci/schema-allowlist.yaml: expandConditionalInsertion)."""
    if isinstance(node, list):
        out: list[Any] = []
        for item in node:
            if isinstance(item, dict) and len(item) == 1 and _IF.match(next(iter(item))):
                out += [_expand(i) for i in next(iter(item.values()))]
            else:
                out.append(_expand(item))
        return out
    if isinstance(node, dict):
        merged: dict[str, Any] = {}
        for key, value in node.items():
            if _IF.match(str(key)) and isinstance(value, dict):
                merged.update(_expand(value))
            else:
                merged[key] = _expand(value)
        return merged
    return node


def _strings(node: Any, keys: set[str]) -> Any:
    if isinstance(node, list):
        return [_strings(i, keys) for i in node]
    if isinstance(node, dict):
        return {k: str(v) if k in keys and isinstance(v, int) else _strings(v, keys) for k, v in node.items()}
    return node


def as_validated(path: Path) -> Any:
    doc = yaml.safe_load(path.read_text())
    if ALLOW["expandConditionalInsertion"]:
        doc = _expand(doc)
    doc = _strings(doc, set(ALLOW["numbersAsStrings"]))
    if ALLOW["typedParameterDefaults"] and isinstance(doc.get("parameters"), list):
        for p in doc["parameters"]:
            if "default" in p and not isinstance(p["default"], str | list | dict):
                p["default"] = str(p["default"]).lower() if isinstance(p["default"], bool) else str(p["default"])
    return doc


def check_jsonschema(paths: list[Path], scratch: Path) -> subprocess.CompletedProcess[str]:
    files = []
    for i, path in enumerate(paths):
        out = scratch / f"{i}-{path.name}"
        out.write_text(json.dumps(as_validated(path)))
        files.append(str(out))
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--regex-variant",
            ALLOW["regexVariant"],
            "--builtin-schema",
            "vendor.azure-pipelines",
            "--default-filetype",
            "json",
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    generate("fraud-scorer", "python", tmp_path_factory.mktemp("new"))
    return tmp_path_factory.getbasetemp() / "new0" / "fraud-scorer"


def _all_files(project: Path) -> list[Path]:
    return [*pipeline_files(CI), *pipeline_files(project / "pipelines")]


def test_the_allowlist_is_the_only_place_rules_are_bent() -> None:
    assert set(ALLOW) == {
        "regexVariant",
        "numbersAsStrings",
        "typedParameterDefaults",
        "expandConditionalInsertion",
        "templatesAsPipelines",
    }


def test_every_pipeline_and_template_validates_against_the_azure_pipelines_schema(
    project: Path, tmp_path: Path
) -> None:
    files = _all_files(project)
    assert len(pipeline_files(CI)) >= 8 and len(pipeline_files(project / "pipelines")) >= 2
    done = check_jsonschema(files, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_catches_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("stages:\n  - stage: A\n    jobs:\n      - job: a\n        stepz: []\n")
    assert check_jsonschema([broken], tmp_path).returncode == 1


def _walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from _walk(child)


def _scripts(doc: Any) -> list[str]:
    """The text of every script/bash step and every scriptPath."""
    out = []
    for node in _walk(doc):
        if isinstance(node, dict):
            for key in ("script", "bash"):
                if isinstance(node.get(key), str):
                    out.append(node[key])
            inputs = node.get("inputs")
            if isinstance(inputs, dict) and isinstance(inputs.get("scriptPath"), str):
                out.append(inputs["scriptPath"])
    return out


def test_every_helm_upgrade_is_atomic_waited_and_timed(project: Path) -> None:
    helm_lines = [s for p in _all_files(project) for s in _scripts(yaml.safe_load(p.read_text())) if "helm " in s]
    for line in helm_lines:
        if re.search(r"\bhelm\s+(upgrade|install)\b", line):
            assert all(f in line for f in ("--atomic", "--wait", "--timeout")), line
    # The helm upgrades of the release steps themselves, as streampod.release builds them.
    t = release.Target("r", "ns", "helm/streampod", timeout="7m")
    for argv in (
        release.candidate_argv(t, "blue", "1.10"),
        release.promote_argv(t, "green"),
        release.rollback_argv(t, "blue", retire=True),
    ):
        assert argv[:2] == ["helm", "upgrade"] and "--reuse-values" in argv
        assert {"--atomic", "--wait"} <= set(argv) and argv[argv.index("--timeout") + 1] == "7m"
    # Every release step the YAML runs passes the timeout parameter through.
    step = yaml.safe_load((CI / "templates" / "release-step.yml").read_text())["steps"][0]["script"]
    assert '--timeout "${{ parameters.helmTimeout }}"' in step


def test_no_literal_secrets(project: Path) -> None:
    for path in _all_files(project):
        for node in _walk(yaml.safe_load(path.read_text())):
            if not isinstance(node, dict):
                continue
            for key, value in node.items():
                if _SECRETISH.search(str(key)) and isinstance(value, str | int) and str(value):
                    # A secret may only be a reference to a (variable group) variable.
                    assert re.fullmatch(r"\$\([A-Za-z_.]+\)", str(value)), f"{path}: {key}: {value}"
                if key == "name" and isinstance(value, str) and _SECRETISH.search(value):
                    pytest.fail(f"{path}: variable {value} defined in YAML; secrets belong in the variable group")


def _stages(path: Path) -> dict[str, Any]:
    return {s["stage"]: s for s in yaml.safe_load(path.read_text())["stages"] if "stage" in s}


def test_only_main_publishes(project: Path) -> None:
    ci = yaml.safe_load((CI / "azure-pipelines.yml").read_text())
    main = next(v for v in ci["variables"] if v.get("name") == "isMainPush")["value"]
    assert "refs/heads/main" in main and "PullRequest" in main
    for path in (CI / "azure-pipelines.yml", project / "pipelines" / "azure-pipelines.yml"):
        pushing = [
            s
            for s in _stages(path).values()
            if any(t in json.dumps(s) for t in ("Docker@2", "docker-image.yml", "push-chart"))
        ]
        assert pushing, path
        for stage in pushing:
            assert "eq(variables.isMainPush, 'True')" in stage["condition"], (path, stage["stage"])


def test_rollback_runs_on_failure_or_rejection_of_any_stage_after_the_plan() -> None:
    stages = {s["stage"]: s for s in yaml.safe_load((CI / "templates" / "release-stages.yml").read_text())["stages"]}
    assert list(stages) == ["Plan", "Candidate", "Compare", "Approve", "Promote", "Rollback"]
    cond = stages["Rollback"]["condition"]
    for name in ("Candidate", "Compare", "Approve", "Promote"):
        assert f"eq(dependencies.{name}.result, 'Failed')" in cond
        assert name in stages["Rollback"]["dependsOn"]
    assert "eq(dependencies.Plan.result, 'Succeeded')" in cond
    for gate in ("environment", "manualValidation"):
        jobs = yaml.safe_load((CI / "templates" / f"approve-{gate}.yml").read_text())["jobs"]
        assert ("deployment" in jobs[0]) == (gate == "environment")
        assert gate == "environment" or jobs[0]["pool"] == "server"


def test_every_script_a_pipeline_runs_exists_and_is_executable(project: Path) -> None:
    referenced: set[str] = set()
    for path in _all_files(project):
        for text in _scripts(yaml.safe_load(path.read_text())):
            referenced |= set(re.findall(r"(?:ci/scripts|\$\(RELEASE_SCRIPTS\))/[\w.-]+\.sh", text))
            if text.strip().startswith("./"):
                referenced.add(text.split()[0][2:])
            for step in re.findall(r"streampod release (\w+)", text):
                assert step in release._STEPS, step
            if "${{ parameters.step }}" in text:
                referenced.add("streampod release")
    referenced = {r.replace("$(RELEASE_SCRIPTS)", "ci/scripts") for r in referenced}
    assert {
        "ci/scripts/lint.sh",
        "ci/scripts/push-chart.sh",
        "ci/scripts/helm-registry-login.sh",
        "dev.sh",
    } <= referenced
    for ref in referenced - {"streampod release"}:
        path = REPO / ref
        assert path.is_file() and path.stat().st_mode & 0o111, ref
