"""The manifests of deploy/kubernetes/ pass kubernetes-validate's strict
schemas offline; the Prometheus Operator's kinds, which it has no schema for,
are checked here against the Services and the rules they refer to."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import kubernetes_validate
import pytest
import yaml

from aiops_common.config import from_mapping
from alertmanager_webhook.config import WebhookConfig
from detector.config import DetectorConfig
from exporter.config import ExporterConfig

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# The oldest release with in-place pod resize (pods/resize) in beta.
KUBERNETES_VERSION = "1.33.0"
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
JOBS = {"aiops-exporter", "aiops-detector", "aiops-webhook"}


def manifests() -> list[dict]:
    docs = []
    for path in sorted(KUBERNETES.glob("*.yml")):
        if path.name != "kustomization.yml":
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def of_kind(kind: str) -> list[dict]:
    return [doc for doc in manifests() if doc["kind"] == kind]


def named(kind: str, name: str) -> dict:
    (doc,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return doc


def render_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_rules", KUBERNETES / "render_rules.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "doc",
    [d for d in manifests() if d["kind"] not in OPERATOR_KINDS],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_manifest_passes_the_strict_kubernetes_schema(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yml")} - {"kustomization.yml"}

    assert sorted(kustomization["resources"]) == sorted(files)


def test_every_object_is_in_the_namespace_and_labelled():
    for doc in manifests():
        meta = doc["metadata"]
        assert meta["labels"]["app.kubernetes.io/part-of"] == "prom-aiops"
        cluster_wide = doc["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding")
        assert cluster_wide or meta["namespace"] == "aiops", meta["name"]


def test_service_monitors_find_their_services_and_name_the_rules_jobs():
    monitors = of_kind("ServiceMonitor")

    assert {m["metadata"]["name"] for m in monitors} == JOBS
    for monitor in monitors:
        spec = monitor["spec"]
        wanted = spec["selector"]["matchLabels"]
        services = [
            s
            for s in of_kind("Service")
            if wanted.items() <= s["metadata"]["labels"].items()
        ]
        # The job label is the Service's name; deploy/rules match on it.
        assert [s["metadata"]["name"] for s in services] == [
            monitor["metadata"]["name"]
        ]
        ports = {p["name"] for p in services[0]["spec"]["ports"]}
        assert {e["port"] for e in spec["endpoints"]} <= ports
        assert set(spec) <= {"selector", "endpoints", "jobLabel", "namespaceSelector"}


def test_detector_keeps_its_source_labels_like_prometheus_yml():
    endpoint = named("ServiceMonitor", "aiops-detector")["spec"]["endpoints"][0]

    assert endpoint["honorLabels"] is True


def test_exporter_runs_on_gpu_nodes_in_the_host_pid_namespace():
    pod = named("DaemonSet", "aiops-exporter")["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}

    assert pod["hostPID"] is True
    assert pod["runtimeClassName"] == "nvidia"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    # Reading NVML claims no GPU from the device plugin.
    assert "nvidia.com/gpu" not in str(pod["containers"][0]["resources"])


def test_detector_shards_cover_every_index_once():
    shards = []
    for deployment in of_kind("Deployment"):
        args = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
        shards += [a.removeprefix("--shard=") for a in args if a.startswith("--shard=")]
    indices = sorted(int(s.split("/")[0]) for s in shards)
    totals = {int(s.split("/")[1]) for s in shards}

    assert len(totals) == 1
    assert indices == list(range(totals.pop()))


def test_receiver_reads_its_token_from_a_secret_the_manifests_leave_alone():
    pod = named("Deployment", "aiops-webhook")["spec"]["template"]["spec"]
    config = yaml.safe_load(named("ConfigMap", "aiops-webhook")["data"]["webhook.yml"])
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    assert volumes["token"]["secret"]["secretName"] == "aiops-webhook"
    assert config["bearer_token_file"] == f"{mounts['token']}/token"
    # One among them would be applied again over the token an operator set.
    assert of_kind("Secret") == [], "the token's Secret is created, not applied"
    assert named("Deployment", "aiops-webhook")["spec"]["replicas"] == 1


def test_exporter_reaches_the_kubelet_socket_through_a_read_only_host_mount():
    pod = named("DaemonSet", "aiops-exporter")["spec"]["template"]["spec"]
    config = yaml.safe_load(
        named("ConfigMap", "aiops-exporter")["data"]["exporter.yml"]
    )
    socket = Path(from_mapping(ExporterConfig, config).kubelet_pod_resources_socket)
    volumes = {v["name"]: v for v in pod["volumes"]}

    (mount,) = [
        m
        for m in pod["containers"][0]["volumeMounts"]
        if socket.is_relative_to(m["mountPath"])
    ]

    host_path = volumes[mount["name"]]["hostPath"]["path"]
    assert mount["readOnly"] is True
    # Same path inside and out, so the default config works on the node too.
    assert host_path == mount["mountPath"] == str(socket.parent)


@pytest.mark.parametrize(
    ("name", "key", "cls"),
    [
        ("aiops-exporter", "exporter.yml", ExporterConfig),
        ("aiops-detector", "detector.yml", DetectorConfig),
        ("aiops-webhook", "webhook.yml", WebhookConfig),
    ],
)
def test_config_maps_hold_configs_the_services_accept(name, key, cls):
    raw = yaml.safe_load(named("ConfigMap", name)["data"][key])

    config = from_mapping(cls, raw)

    assert config.listen_address.startswith("0.0.0.0:")


def test_prometheus_rule_is_generated_from_deploy_rules():
    module = render_rules()

    assert (KUBERNETES / "prometheusrule.yml").read_text() == module.render(), (
        "run python deploy/kubernetes/render_rules.py"
    )
    assert named("PrometheusRule", "prom-aiops") == module.prometheus_rule()


def test_prometheus_rule_groups_pass_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; `make test` installs it")
    spec = named("PrometheusRule", "prom-aiops")["spec"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(spec))

    result = subprocess.run(
        [promtool, "check", "rules", "rules.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
