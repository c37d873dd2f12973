"""The deployment files, checked without a container runtime: they parse, the compose file has
the cluster it promises (three KRaft brokers, replication factor 3, two workers with volumes,
static membership and health checks, Prometheus, Grafana), the Kubernetes objects hold the
fields that matter, the Strimzi resources are the generator's output, and every metric the
dashboard queries is one the worker exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from streams.metrics import WorkerMetrics
from tools import gen_strimzi

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def k8s() -> list[dict]:
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in load_all(path)]


def test_every_yaml_file_parses():
    paths = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert len(paths) >= 8
    for path in paths:
        assert load_all(path), path


# -- compose -----------------------------------------------------------------------------------
def brokers(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("image", "").startswith("apache/kafka:")}


def workers(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("command") == ["run"]}


def test_compose_runs_three_kraft_brokers_with_replication_factor_3(compose):
    kafka = brokers(compose)
    assert len(kafka) == 3
    node_ids = {s["environment"]["KAFKA_NODE_ID"] for s in kafka.values()}
    assert node_ids == {1, 2, 3}
    for name, service in kafka.items():
        env = service["environment"]
        assert "controller" in env["KAFKA_PROCESS_ROLES"].split(",")
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert sorted(v.split("@")[1].split(":")[0] for v in voters) == sorted(kafka)
        assert env["KAFKA_ADVERTISED_LISTENERS"].endswith(f"//{name}:9092")
        for key in ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
            assert int(env[key]) == 3
        assert "healthcheck" in service and service["volumes"]


def test_compose_creates_the_topics_with_replication_factor_3(compose):
    topics = compose["services"]["topics"]
    assert topics["command"][:2] == ["topics", "create"]
    assert int(topics["environment"]["ATOGUARD_REPLICATION_FACTOR"]) == 3
    assert set(topics["depends_on"]) == set(brokers(compose))
    servers = topics["environment"]["ATOGUARD_BOOTSTRAP_SERVERS"].split(",")
    assert sorted(s.split(":")[0] for s in servers) == sorted(brokers(compose))


def test_compose_runs_two_workers_with_volumes_static_ids_and_health_checks(compose):
    found = workers(compose)
    assert len(found) == 2
    ids = {s["environment"]["ATOGUARD_INSTANCE_ID"] for s in found.values()}
    assert len(ids) == 2
    volumes = [s["volumes"][0].split(":")[0] for s in found.values()]
    assert len(set(volumes)) == 2 and all(v in compose["volumes"] for v in volumes)
    for service in found.values():
        assert "/healthz" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_compose_named_volumes_and_dependencies_exist(compose):
    services = compose["services"]
    for name, service in services.items():
        deps = service.get("depends_on", [])
        assert set(deps) <= set(services), name
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: {source}"


def test_prometheus_scrapes_every_worker_on_its_web_port(compose):
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{name}:6066" for name in workers(compose)}
    assert "prometheus" in compose["services"] and "grafana" in compose["services"]


def test_grafana_provisions_the_dashboard_folder_it_mounts(compose):
    mounts = dict(m.split(":")[:2] for m in compose["services"]["grafana"]["volumes"] if m.startswith("."))
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/atoguard.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts["./grafana/dashboards"] == path
    assert list((DEPLOY / "grafana/dashboards").glob("*.json"))


# -- Dockerfile --------------------------------------------------------------------------------
def test_dockerfile_is_slim_non_root_and_checks_health():
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    first = dict((k, v) for k, v in instructions if k in ("FROM", "USER"))
    assert first["FROM"].startswith("python:3.11-slim")
    assert first["USER"] not in ("root", "0")
    assert "HEALTHCHECK" in text and "/healthz" in text
    for k, v in instructions:
        if k == "COPY":
            for source in v.split()[:-1]:
                assert (ROOT / source).exists(), source


# -- Kubernetes --------------------------------------------------------------------------------
OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                   "metadata": {"type": "object", "required": ["name"],
                                "properties": {"name": {"type": "string",
                                                        "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}}}},
}
STATEFULSET = {
    "type": "object",
    "required": ["spec"],
    "properties": {"spec": {
        "type": "object",
        "required": ["serviceName", "replicas", "selector", "template", "volumeClaimTemplates"],
        "properties": {
            "replicas": {"type": "integer", "minimum": 1},
            "volumeClaimTemplates": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["metadata", "spec"],
                "properties": {"spec": {"required": ["accessModes", "resources"]}}}},
            "template": {"type": "object", "required": ["metadata", "spec"], "properties": {
                "spec": {"type": "object", "required": ["containers"], "properties": {
                    "containers": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["name", "image", "ports", "volumeMounts"]}}}}}},
        }}},
}


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def test_kubernetes_objects_have_api_version_kind_and_name(k8s):
    assert {o["kind"] for o in k8s} >= {"StatefulSet", "Service", "ConfigMap", "Secret"}
    for obj in k8s:
        jsonschema.validate(obj, OBJECT)


def test_statefulset_has_a_volume_per_pod_and_the_pod_name_as_member_id(k8s):
    (sts,) = by_kind(k8s, "StatefulSet")
    jsonschema.validate(sts, STATEFULSET)
    spec = sts["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    (container,) = spec["template"]["spec"]["containers"]
    claims = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert claims <= set(mounts)
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["ATOGUARD_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    services = {s["metadata"]["name"] for s in by_kind(k8s, "Service")}
    assert spec["serviceName"] in services


def test_statefulset_reads_the_configmap_and_secret_that_exist(k8s):
    (sts,) = by_kind(k8s, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    configmaps = {o["metadata"]["name"]: o for o in by_kind(k8s, "ConfigMap")}
    secrets = {o["metadata"]["name"]: o for o in by_kind(k8s, "Secret")}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            data = configmaps[source["configMapRef"]["name"]]["data"]
            assert all(re.fullmatch(r"[A-Z_][A-Z0-9_]*", key) for key in data)  # all become variables
        else:
            data = secrets[source["secretRef"]["name"]]["stringData"]
            assert {"ATOGUARD_KEYS__COMMAND_HMAC", "ATOGUARD_SASL_PASSWORD"} <= set(data)
    data_dir = configmaps["atoguard"]["data"]["ATOGUARD_DATA_DIR"]
    assert data_dir in {m["mountPath"] for m in container["volumeMounts"]}
    for volume in pod["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] in configmaps


def test_kubernetes_settings_are_known_to_atoguard(k8s):
    """Every variable the pods get is one atoguard reads (a misspelt one would set nothing)."""
    from detectors.config import Config
    from streams.settings import ENVIRONMENT, check_environment

    env = {}
    for obj in by_kind(k8s, "ConfigMap") + by_kind(k8s, "Secret"):
        env.update({k: str(v) for k, v in (obj.get("data") or obj.get("stringData")).items()
                    if k.startswith("ATOGUARD_")})
    check_environment(env)
    assert {k for k in env if "__" not in k} <= set(ENVIRONMENT)
    Config.from_toml("", {k: v for k, v in env.items() if "__" in k})


def test_metrics_service_selects_the_worker_pods(k8s):
    (sts,) = by_kind(k8s, "StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    port_names = {p["name"] for p in container["ports"]}
    services = {s["metadata"]["name"]: s for s in by_kind(k8s, "Service")}
    metrics = services["atoguard-metrics"]["spec"]
    assert metrics["selector"].items() <= pod_labels.items()
    assert {p["targetPort"] for p in metrics["ports"]} <= port_names


# -- Strimzi -----------------------------------------------------------------------------------
def test_strimzi_files_are_the_generators_output():
    rendered = gen_strimzi.render()
    committed = {p.name: p.read_text() for p in (DEPLOY / "strimzi").glob("*.yaml")}
    assert committed == rendered, "deploy/strimzi is stale: run python -m tools.gen_strimzi"


def test_strimzi_topics_cover_the_registry_with_three_replicas():
    from streams.topics import registry

    topics = load_all(DEPLOY / "strimzi" / "topics.yaml")
    assert [t["spec"]["topicName"] for t in topics] == [s.name() for s in registry()]
    assert {t["spec"]["replicas"] for t in topics} == {3}


# -- Grafana against the worker's metrics ----------------------------------------------------------
def exported_metric_names() -> set[str]:
    """Every series name the worker's /metrics can show, from its exposition text."""
    names = set()
    for line in WorkerMetrics().render().decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name} if kind != "histogram" else {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def test_every_metric_the_dashboard_queries_is_exported():
    exported = exported_metric_names()
    assert "atoguard_commands_total" in exported
    for path in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        assert exprs
        used = {name for expr in exprs for name in re.findall(r"\batoguard_[a-z0-9_]+", expr)}
        assert used and used <= exported, used - exported


# -- docs and examples -------------------------------------------------------------------------
def test_reasons_doc_is_the_generators_output():
    from tools import gen_reasons

    assert (ROOT / "docs" / "reasons.md").read_text() == gen_reasons.render(), \
        "docs/reasons.md is stale: run python -m tools.gen_reasons"


def test_example_policy_loads_and_sets_every_setting():
    """examples/policy.toml names every setting of detectors/config.py (a new one must join it)."""
    import dataclasses
    import tomllib

    from detectors.config import AllowEntry, Config, Keys, Policy, Stream, Windows

    text = (ROOT / "examples" / "policy.toml").read_text()
    Config.from_toml(text)
    data = tomllib.loads(text)
    assert set(data) == {f.name for f in dataclasses.fields(Config)}
    for section, cls in (("policy", Policy), ("windows", Windows), ("keys", Keys), ("stream", Stream)):
        assert set(data[section]) == {f.name for f in dataclasses.fields(cls)}, section
    assert set(data["allow"][0]) == {f.name for f in dataclasses.fields(AllowEntry)}


def test_example_policy_holds_the_defaults_apart_from_the_allow_list():
    from detectors.config import Config

    loaded = Config.from_toml((ROOT / "examples" / "policy.toml").read_text())
    assert loaded.replace(allow=()) == Config()


def test_account_service_snippet_verifies_atoguard_commands():
    """The reference consumer's verified() of docs/account-service.md accepts a real command and
    refuses a changed one."""
    from detectors.outputs import command_value

    doc = (ROOT / "docs" / "account-service.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    snippet = code.split("def verified", 1)[1].split("\nconsumer", 1)[0]
    namespace: dict = {}
    exec("import hashlib, hmac, json\nKEY = b'k' * 16\ndef verified" + snippet, namespace)
    cmd = command_value(account_id="a1", action="freeze", reasons=("SIM_SWAP",), risk=0.9,
                        issued_at=10, expires_at=100, trigger_event_id="e1", alert_id=None,
                        policy_version="p", dry_run=False, key="k" * 16, methods=["face"])
    assert namespace["verified"](cmd)
    assert not namespace["verified"]({**cmd, "dry_run": True})
