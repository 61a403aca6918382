"""The Helm chart, rendered and checked without a cluster.

Every values file in helm/streampod/ci/ is linted (`helm lint --strict`), rendered and validated in
strict mode (Kubernetes schemas for 1.29 and 1.33 via kubernetes-validate; KEDA and ServiceMonitor by
their CRD models); every file in tests/helm_bad_values/ must be refused with the message its first
line names. Then the invariants the chart promises, asserted on what it renders.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streampod import chart
from streampod.chart import Manifest, by_kind, env_of, pod_containers

CI = chart.CHART / "ci"
CI_VALUES = sorted(CI.glob("*.yaml"))
BAD_VALUES = sorted((Path(__file__).parent / "helm_bad_values").glob("*.yaml"))
BASE = CI / "kafka-values.yaml"
SECRET_ENV = re.compile(r"(PASSWORD|CONNECTION_STRING)$")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {path.name: chart.render(path) for path in CI_VALUES}


def _workloads(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """(owner, pod spec) of every pod the chart makes, the `helm test` hook included."""
    for d in by_kind(manifests, "Deployment"):
        yield d["metadata"]["name"], d["spec"]["template"]["spec"]
    for p in by_kind(manifests, "Pod"):
        yield p["metadata"]["name"], p["spec"]


def _deployments(manifests: list[Manifest]) -> dict[str, Manifest]:
    """Deployments by colour ("" without blue/green)."""
    out = {}
    for d in by_kind(manifests, "Deployment"):
        out[d["metadata"]["labels"].get("streampod.io/color", "")] = d
    return out


def _container(deployment: Manifest, name: str) -> Manifest:
    return next(c for c in pod_containers(deployment) if c["name"] == name)


def _running(deployment: Manifest) -> bool:
    return deployment["spec"].get("replicas", 1) > 0


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_lint_render_and_validate_strictly(values: Path, rendered: dict[str, list[Manifest]]) -> None:
    chart.lint(values)
    manifests = rendered[values.name]
    assert by_kind(manifests, "Deployment")
    assert chart.validate(manifests) == []


def test_strict_validation_catches_what_it_should(rendered: dict[str, list[Manifest]]) -> None:
    """The validators are not vacuous: an unknown field fails, in a core object and in a KEDA one."""

    def fresh() -> list[Manifest]:
        return yaml.safe_load(yaml.safe_dump(rendered["keda-values.yaml"]))  # type: ignore[no-any-return]

    deployment = by_kind(fresh(), "Deployment")[0]
    pod_containers(deployment)[0]["livenessprobe"] = {}
    unknown_field = by_kind(fresh(), "ScaledObject")[0]
    unknown_field["spec"]["maxReplicas"] = 3
    wrong_type = by_kind(fresh(), "ScaledObject")[0]
    wrong_type["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 5
    for broken, expected in (
        (deployment, "'livenessprobe' was unexpected"),
        (unknown_field, "'\"maxReplicas\"' does not exist in type 'IScaledObjectSpec'"),
        (wrong_type, "lagThreshold must be string"),
    ):
        assert expected in "\n".join(chart.validate([broken]))


@pytest.mark.parametrize("bad", BAD_VALUES, ids=lambda p: p.stem)
def test_bad_values_are_refused_with_a_clear_message(bad: Path) -> None:
    expected = bad.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(chart.RenderError) as refused:
        chart.render(BASE, bad)
    assert expected in str(refused.value)


def _secret_values(values_file: Path) -> list[str]:
    v = yaml.safe_load(values_file.read_text())
    found = [
        v.get("kafka", {}).get("sasl", {}).get("password"),
        v.get("kafka", {}).get("eventHubsConnectionString"),
        v.get("eventhubs", {}).get("connectionString"),
        v.get("eventhubs", {}).get("checkpointStore", {}).get("connectionString"),
    ]
    return [s for s in found if s]


def test_secrets_only_in_secrets(rendered: dict[str, list[Manifest]]) -> None:
    checked = 0
    for path in CI_VALUES:
        manifests = rendered[path.name]
        secrets = _secret_values(path)
        in_secrets = {
            base64.b64decode(value).decode() for s in by_kind(manifests, "Secret") for value in s["data"].values()
        }
        assert set(secrets) <= in_secrets, f"{path.name}: a secret value is missing from the Secret"
        for m in manifests:
            if m["kind"] == "Secret":
                continue
            text = yaml.safe_dump(m)
            for s in secrets:
                checked += 1
                assert s not in text, f"{path.name}: a secret value appears in {m['kind']}/{m['metadata']['name']}"
        for _, pod in _workloads(manifests):
            for c in [*pod.get("initContainers", []), *pod["containers"]]:
                for name in env_of(c):
                    assert not SECRET_ENV.search(name), f"{path.name}: {c['name']} has {name} as a literal"
    assert checked > 0, "no values file carries a secret: the check above proved nothing"


def test_every_container_has_probes_limits_and_a_restrictive_security_context(
    rendered: dict[str, list[Manifest]],
) -> None:
    for name, manifests in rendered.items():
        for owner, pod in _workloads(manifests):
            psc = pod["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault", owner
            assert pod["automountServiceAccountToken"] is False, owner
            tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            is_hook = owner.endswith("-test-readiness")
            for c in [*pod.get("initContainers", []), *pod["containers"]]:
                where = f"{name}: {owner}/{c['name']}"
                sc = c["securityContext"]
                assert sc["runAsNonRoot"] is True, where
                assert sc["readOnlyRootFilesystem"] is True, where
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["capabilities"] == {"drop": ["ALL"]}, where
                assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
                assert {"cpu", "memory"} <= set(c["resources"]["limits"]), where
                mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
                assert mounts.get("/tmp") in tmp_volumes, f"{where}: no emptyDir at /tmp"
                if is_hook:
                    continue  # a run-once test pod has nothing to probe
                for probe, path in (
                    ("startupProbe", "/healthz"),
                    ("livenessProbe", "/healthz"),
                    ("readinessProbe", "/readyz"),
                ):
                    assert c[probe]["httpGet"]["path"] == path, f"{where}: {probe}"
                    port = c[probe]["httpGet"]["port"]
                    assert port in {p["name"] for p in c["ports"]}, f"{where}: {probe} on an undeclared port"


def test_native_sidecars_start_writer_then_app_then_reader(rendered: dict[str, list[Manifest]]) -> None:
    for name, manifests in rendered.items():
        for d in by_kind(manifests, "Deployment"):
            spec = d["spec"]["template"]["spec"]
            assert [c["name"] for c in spec["initContainers"]] == ["output-writer", "app"], name
            assert all(c["restartPolicy"] == "Always" for c in spec["initContainers"]), name
            assert [c["name"] for c in spec["containers"]] == ["input-reader"], name
            assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_containers_talk_over_localhost_on_the_ports_they_listen_on(rendered: dict[str, list[Manifest]]) -> None:
    for name, manifests in rendered.items():
        for d in by_kind(manifests, "Deployment"):
            reader = env_of(_container(d, "input-reader"))
            app = env_of(_container(d, "app"))
            writer = env_of(_container(d, "output-writer"))
            assert reader["STREAMPOD_APP_URL"] == f"http://127.0.0.1:{app['STREAMPOD_APP_PORT']}", name
            assert app["STREAMPOD_OUTPUT_URL"] == f"http://127.0.0.1:{writer['STREAMPOD_WRITER_PORT']}", name
            for c in pod_containers(d):
                assert [int(env_of(c)["STREAMPOD_OPS_PORT"])] == [p["containerPort"] for p in c["ports"]], name
                assert "STREAMPOD_APP_HOST" not in env_of(c) and "STREAMPOD_WRITER_HOST" not in env_of(c)


def test_standard_labels_on_every_object(rendered: dict[str, list[Manifest]]) -> None:
    for name, manifests in rendered.items():
        for m in manifests:
            labels = m["metadata"]["labels"]
            for key in (
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by",
                "helm.sh/chart",
            ):
                assert key in labels, f"{name}: {m['kind']}/{m['metadata']['name']} lacks {key}"


def _roles(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    """Per colour: role, consumer group, output topic, allowed topics, dead letters, app image."""
    out = {}
    for colour, d in _deployments(manifests).items():
        reader = env_of(_container(d, "input-reader"))
        writer = env_of(_container(d, "output-writer"))
        out[colour] = {
            "role": d["metadata"]["labels"].get("streampod.io/role", "active"),
            "running": _running(d),
            "group": reader["STREAMPOD_CONSUMER_GROUP"],
            "output": writer["STREAMPOD_OUTPUT_TOPIC"],
            "allowed": writer.get("STREAMPOD_OUTPUT_ALLOWED_TOPICS", ""),
            "dlq": reader["STREAMPOD_DEAD_LETTER_TOPIC"],
            "start": reader.get("STREAMPOD_AUTO_OFFSET_RESET"),
            "image": _container(d, "app")["image"],
            "app_env": env_of(_container(d, "app")),
        }
    return out


def test_the_candidate_never_writes_the_real_output_or_dead_letters() -> None:
    for active in ("blue", "green"):
        extra: dict[str, Any] = {
            "blueGreen": {"activeColor": active},
            "output": {"allowedTopics": ["orders-flagged"]},
            "deadLetter": {"topic": "orders-dead"},
        }
        roles = _roles(chart.render(CI / "bluegreen-blue-values.yaml", extra))
        real, candidate = roles[active], roles["green" if active == "blue" else "blue"]
        assert candidate["role"] == "candidate" and candidate["running"]
        assert real["output"] == "orders-scored" and real["allowed"] == "orders-flagged"
        assert real["dlq"] == "orders-dead"
        assert candidate["output"] == "orders-scored.shadow"
        assert candidate["allowed"] == "", "a candidate may not route to any real topic"
        assert candidate["dlq"] == "orders-dead.shadow"
        assert candidate["start"] == "latest"


def test_colours_never_share_a_consumer_group_while_both_consume(rendered: dict[str, list[Manifest]]) -> None:
    seen = 0
    for name, manifests in rendered.items():
        roles = _roles(manifests)
        running = [r for r in roles.values() if r["running"]]
        groups = [r["group"] for r in running]
        assert len(groups) == len(set(groups)), f"{name}: two running colours share a consumer group"
        if len(running) == 2:
            seen += 1
    assert seen >= 2, "the ci values cover blue/green with both colours running"


def test_promotion_moves_the_pipeline_group_to_the_new_colour(rendered: dict[str, list[Manifest]]) -> None:
    before = _roles(rendered["bluegreen-blue-values.yaml"])
    after = _roles(rendered["bluegreen-green-values.yaml"])
    assert before["blue"]["group"] == after["green"]["group"] == "orders-scorer"
    assert before["green"]["group"] == "orders-scorer-candidate-green"
    assert after["blue"]["group"] == "orders-scorer-candidate-blue"
    assert before["blue"]["output"] == after["green"]["output"] == "orders-scored"
    # Each colour keeps its own app image and settings through the promotion: only the roles move.
    for colour in ("blue", "green"):
        assert before[colour]["image"] == after[colour]["image"]
        assert before[colour]["app_env"] == after[colour]["app_env"]
    assert after["green"]["image"].endswith(":1.5.0") and after["green"]["app_env"]["MODEL_VERSION"] == "1.5.0"


def test_scaled_to_zero_colour_has_no_pods_no_budget_and_no_autoscaler(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["keda-values.yaml"]
    deployments = _deployments(manifests)
    assert deployments["blue"]["spec"]["replicas"] == 0
    assert "replicas" not in deployments["green"]["spec"], "KEDA owns the active colour's replicas"
    scaled = by_kind(manifests, "ScaledObject")
    assert [s["spec"]["scaleTargetRef"]["name"] for s in scaled] == [deployments["green"]["metadata"]["name"]]
    assert scaled[0]["spec"]["maxReplicaCount"] == 6
    trigger = scaled[0]["spec"]["triggers"][0]
    assert trigger["metadata"]["consumerGroup"] == "orders-scorer"
    budgets = by_kind(manifests, "PodDisruptionBudget")
    assert [b["metadata"]["name"] for b in budgets] == [deployments["green"]["metadata"]["name"]]
    hook = by_kind(manifests, "Pod")[0]
    urls = [a for a in hook["spec"]["containers"][0]["args"] if a.startswith("http")]
    assert urls and all("-green:" in u for u in urls), "helm test checks only the running colour"


def test_keda_is_capped_at_the_partition_count() -> None:
    values = {"autoscaling": {"keda": {"enabled": True, "partitionCount": 3}}}
    scaled = by_kind(chart.render(BASE, values), "ScaledObject")
    assert [s["spec"]["maxReplicaCount"] for s in scaled] == [3]
    assert scaled[0]["spec"]["triggers"][0]["metadata"]["allowIdleConsumers"] == "false"


def test_a_changed_secret_rolls_the_pods() -> None:
    def checksum(password: str) -> str:
        values = {
            "kafka": {
                "securityProtocol": "SASL_SSL",
                "sasl": {"mechanism": "PLAIN", "username": "u", "password": password},
            }
        }
        d = by_kind(chart.render(BASE, values), "Deployment")[0]
        return str(d["spec"]["template"]["metadata"]["annotations"]["checksum/secret"])

    assert checksum("one") != checksum("two")


def test_secrets_reach_only_the_sidecars_as_files(rendered: dict[str, list[Manifest]]) -> None:
    d = by_kind(rendered["eventhubs-native-values.yaml"], "Deployment")[0]
    reader, app, writer = (_container(d, n) for n in ("input-reader", "app", "output-writer"))
    assert {m["name"] for m in app["volumeMounts"]} == {"tmp-app"}, "the app container gets no credentials"
    assert env_of(reader)["STREAMPOD_CHECKPOINT_STORE_CONNECTION_STRING_FILE"].startswith("/var/run/secrets/")
    assert "STREAMPOD_CHECKPOINT_STORE_CONNECTION_STRING_FILE" not in env_of(writer)
    volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
    assert [i["key"] for i in volumes["writer-secrets"]["secret"]["items"]] == ["eventhub-connection-string"]


def test_network_policy_only_when_asked(rendered: dict[str, list[Manifest]]) -> None:
    for name, manifests in rendered.items():
        policies = by_kind(manifests, "NetworkPolicy")
        assert len(policies) == (name == "networkpolicy-values.yaml"), name
    policy = by_kind(rendered["networkpolicy-values.yaml"], "NetworkPolicy")[0]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert {p["port"] for p in policy["spec"]["ingress"][0]["ports"]} == {"reader-ops", "app-ops", "writer-ops"}
