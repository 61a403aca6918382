"""Each app template end to end, as a data scientist meets it.

For python, sklearn and pyspark: ``streampod new`` makes a project (training its model), the
project's own tests pass, then its sample messages go through the three real processes on the real
Kafka broker, and the predictions that come out equal the model's own, computed directly (joblib and
numpy for scikit-learn; a plain SparkSession loading the saved PipelineModel for PySpark). The
invalid samples are dead-lettered with a reason naming the field. Then the templates and ``streampod
new`` from a built wheel, not from this checkout.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pytest
import yaml
from confluent_kafka import Producer
from pipeline_support import APPS, Out, read_all, wait_committed_to_end

from streampod.app import Message
from streampod.contract import parse_source_header
from streampod.scaffold import TEMPLATES

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parent.parent
NAMES = {"python": "orders", "sklearn": "iris-scorer", "pyspark": "diabetes-rf"}
SAMPLE_HEADER = "sample"
PARTITIONS = 3


def streampod_new(into: Path, template: str, *extra: str, env: dict[str, str] | None = None) -> Path:
    name = NAMES[template]
    proc = subprocess.run(
        [sys.executable, "-m", "streampod", "new", name, "--template", template, "--dir", str(into), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, f"streampod new failed:\n{proc.stdout}\n{proc.stderr}"
    return into / name


def run_own_tests(project: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    """The project's tests as its README says (`pytest` in the folder), warnings as errors."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:asyncio", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    tail = "\n".join(proc.stdout.splitlines()[-40:])
    assert proc.returncode == 0, f"the project's own tests failed:\n{tail}\n{proc.stderr[-3000:]}"
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary
    return summary


def samples(project: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (project / "samples.jsonl").read_bytes().splitlines() if line.strip()]


def through_kafka(
    project: Path,
    kafka_broker: Any,
    topic_factory: Any,
    kafka_env: Any,
    stage_factory: Any,
    start_timeout: float = 60.0,
    check_running: Callable[[Any], None] | None = None,
) -> tuple[dict[int, Out], dict[int, Out]]:
    """The samples through reader, app and writer on the real broker: outputs and dead letters by sample."""
    boot = kafka_broker.bootstrap_servers
    topic_in, topic_out = topic_factory(PARTITIONS, "tpl-in"), topic_factory(PARTITIONS, "tpl-out")
    dlq = topic_factory(1, "tpl-dlq")
    group = f"tpl-{uuid.uuid4().hex[:8]}"
    records = samples(project)
    producer = Producer({"bootstrap.servers": boot, "enable.idempotence": True})
    for i, s in enumerate(records):
        # Each sample says which it is in a header, which outputs and dead letters keep.
        producer.produce(
            topic_in, key=s["key"].encode(), value=orjson.dumps(s["value"]), headers=[(SAMPLE_HEADER, b"%d" % i)]
        )
    assert producer.flush(30) == 0
    stage = stage_factory(**kafka_env(topic_in, topic_out, group=group, dlq=dlq), app_module=str(project / "app.py"))
    stage.start(start_timeout)
    if check_running is not None:
        check_running(stage)
    got = read_all(boot, [topic_out, dlq], expected=len(records), timeout=start_timeout + 60)
    wait_committed_to_end(boot, group, topic_in, PARTITIONS)
    outputs = {int(o.headers[SAMPLE_HEADER]): o for o in got if o.topic == topic_out}
    dead = {int(o.headers[SAMPLE_HEADER]): o for o in got if o.topic == dlq}
    assert len(outputs) + len(dead) == len(records) == len(got), f"{len(got)} records for {len(records)} samples"
    for i, o in outputs.items():
        assert o.key == records[i]["key"], "an output keeps its input's key"
    return outputs, dead


def check_dead_letters(dead: dict[int, Out], expected: dict[int, str]) -> None:
    assert sorted(dead) == sorted(expected)
    for i, reason in expected.items():
        got = dead[i].headers["streampod-error"].decode()
        assert reason in got, f"sample {i}: dead-letter reason {got!r} lacks {reason!r}"


def listening_addresses(pid: int) -> set[str]:
    """The local addresses that process ``pid`` and its descendants listen on (TCP, read from /proc)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError):
                continue
    tree, grew = {pid}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    inodes = set()
    for p in tree:
        try:
            fds = list(Path(f"/proc/{p}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                raw = bytes.fromhex(fields[1].split(":")[0])
                # /proc prints each 32-bit word in host (little-endian) order.
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(family, raw))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def load_module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"generated_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_template(tmp_path, kafka_broker, topic_factory, kafka_env, stage_factory):
    project = streampod_new(tmp_path, "python")
    run_own_tests(project, timeout=180)
    outputs, dead = through_kafka(project, kafka_broker, topic_factory, kafka_env, stage_factory)
    app = load_module(project / "app.py")
    records = samples(project)
    for i, o in outputs.items():
        value = app.Order.model_validate(records[i]["value"])
        assert o.json() == app.process(Message(f"s{i}", records[i]["key"], value, {})), f"sample {i}"
    assert len(outputs) == 10
    check_dead_letters(dead, {10: "value.amount: Input should be a valid number", 11: "KeyError: 'JPY'"})


def test_sklearn_template(tmp_path, kafka_broker, topic_factory, kafka_env, stage_factory):
    project = streampod_new(tmp_path, "sklearn")
    assert (project / "model" / "model.joblib").is_file(), "streampod new trains the example model"
    run_own_tests(project, timeout=300)
    outputs, dead = through_kafka(project, kafka_broker, topic_factory, kafka_env, stage_factory)
    # The model's own predictions, with joblib and numpy only.
    metadata = json.loads((project / "model" / "model.json").read_text())
    model = joblib.load(project / "model" / "model.joblib")
    records = samples(project)
    x = np.array([[records[i]["value"][f] for f in metadata["features"]] for i in sorted(outputs)])
    expected = dict(zip(sorted(outputs), model.predict(x), strict=True))
    assert len(outputs) == 10
    for i, o in outputs.items():
        out = o.json()
        assert out["prediction"] == expected[i], f"sample {i}"
        assert out["model_version"] == metadata["version"]
        topic, _, offset = parse_source_header(o.headers["streampod-source"].decode())[0].split("/")
        assert (out["input"]["topic"], out["input"]["offset"]) == (topic, int(offset))
    check_dead_letters(
        dead, {10: "value.petal_width: Field required", 11: "value.sepal_length: Input should be a valid number"}
    )


@pytest.mark.pyspark
def test_pyspark_template(tmp_path, kafka_broker, topic_factory, kafka_env, stage_factory):
    pytest.importorskip("pyspark", reason="the pyspark extra is not installed (CI installs it with [dev])")
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: Spark needs Java 17 or 21")
    project = streampod_new(tmp_path, "pyspark")
    assert (project / "model" / "pipeline").is_dir(), "streampod new trains the example model"
    run_own_tests(project, timeout=600)
    listening: set[str] = set()

    def spark_listens_on_loopback_only(stage: Any) -> None:
        listening.update(listening_addresses(stage["app"].proc.pid))
        assert listening, "the app's processes listen on nothing"
        assert all(is_loopback(a) for a in listening), f"the app or its JVM listens beyond loopback: {listening}"

    # Spark's start and the model load come before /healthz: give the app minutes on a busy machine.
    outputs, dead = through_kafka(
        project,
        kafka_broker,
        topic_factory,
        kafka_env,
        stage_factory,
        start_timeout=240,
        check_running=spark_listens_on_loopback_only,
    )
    direct = subprocess.run(
        [sys.executable, str(APPS / "spark_direct.py"), str(project / "model"), str(project / "samples.jsonl")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert direct.returncode == 0, direct.stderr[-3000:]
    expected = json.loads(direct.stdout.strip().splitlines()[-1])
    version = json.loads((project / "model" / "model.json").read_text())["version"]
    assert len(outputs) == len(expected) == 10
    for i, o in outputs.items():
        assert o.json()["prediction"] == expected[i], f"sample {i}"
        assert o.json()["model_version"] == version
    check_dead_letters(dead, {10: "value.glu: Field required", 11: "value.bmi: Input should be a valid number"})


@pytest.mark.parametrize("template", TEMPLATES)
def test_values_render_with_the_chart(template, tmp_path):
    """Each template's values.yaml, as generated, renders with the real chart (helm template)."""
    helm = subprocess.run(["bash", str(REPO / "scripts" / "install-helm.sh")], capture_output=True, text=True)
    if helm.returncode != 0:
        pytest.skip(f"no helm: {helm.stderr.strip()[-300:]}")
    project = streampod_new(tmp_path, template, "--no-train")
    values = yaml.safe_load((project / "values.yaml").read_text())
    proc = subprocess.run(
        [
            helm.stdout.strip(),
            "template",
            NAMES[template],
            str(REPO / "helm" / "streampod"),
            "-f",
            str(project / "values.yaml"),
            "--set",
            "kafka.bootstrapServers=broker:9092",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert deployments
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        # The chart runs the app as a native sidecar (an init container that keeps running).
        app = next(c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == "app")
        assert app["image"].split(":")[0].endswith(f"{NAMES[template]}/app")
        assert app["resources"]["limits"] == values["app"]["resources"]["limits"]
        probe = app["startupProbe"]
        assert probe["failureThreshold"] == values["app"]["startupProbe"]["failureThreshold"]
        env = {e["name"]: e.get("value") for e in app.get("env", [])}
        for k, v in values["app"]["env"].items():
            assert env[k] == v
        if "tmpSizeLimit" in values:
            tmp = next(v for v in pod["volumes"] if v["name"] == "tmp-app")
            assert tmp["emptyDir"]["sizeLimit"] == values["tmpSizeLimit"]


def test_streampod_new_from_a_built_wheel(tmp_path):
    """The templates ship in the wheel: `streampod new` from it, and the project's tests against it."""
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("streampod-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for template in TEMPLATES:
        assert f"streampod/templates/{template}/app.py" in names
        assert f"streampod/templates/{template}/.gitignore" in names
    assert not [n for n in names if "__pycache__" in n or "/model/" in n]
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        # `streampod run`'s demo finds the plain template there too.
        [
            sys.executable,
            "-c",
            "import streampod.run as r; print(r.TEMPLATE.parent, (r.TEMPLATE / 'app.py').is_file())",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert where.stdout.strip().startswith(str(site)) and where.stdout.strip().endswith("True"), where.stdout
    project = streampod_new(tmp_path / "out", "sklearn", "--no-train", env=env)
    assert not (project / "model").exists()
    # Without model/, the project's tests train one into a temporary folder first.
    run_own_tests(project, timeout=300, env=env)
