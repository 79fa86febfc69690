"""deploy/compose.yml passes docker-compose's own schema check (offline, no
engine needed) and wires the containers to the configs of deploy/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose.yml"
# Files the operator creates before `up`; everything else mounted must exist.
CREATED_BY_HAND = {"webhook-token"}


def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_compose_file_passes_docker_compose_config(tmp_path):
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("needs Debian's docker-compose (its `config` checks the schema)")

    result = subprocess.run(
        [tool, "--project-directory", str(DEPLOY), "-f", str(COMPOSE), "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_bind_mount_exists_in_the_repository():
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("."):
                continue
            path = (DEPLOY / source).resolve()
            assert path.exists() or path.name in CREATED_BY_HAND, (name, source)


def test_services_listen_where_prometheus_and_alertmanager_look():
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    alertmanager = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0]
        for job in prometheus["scrape_configs"]
    }
    configured = {
        f"aiops-{name}": yaml.safe_load((DEPLOY / f"{name}.yml").read_text())
        for name in ("exporter", "detector", "webhook")
    }
    compose = services()

    for job, target in targets.items():
        assert configured[job]["listen_address"] == target
        assert compose[job]["network_mode"] == "host"
    receiver = alertmanager["receivers"][0]["webhook_configs"][0]["url"]
    assert receiver.startswith(f"http://{targets['aiops-webhook']}/")
    am = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert f"--web.listen-address={am[0]}" in compose["alertmanager"]["command"]


def test_exporter_sees_the_hosts_processes_and_gpus():
    exporter = services()["aiops-exporter"]
    devices = exporter["deploy"]["resources"]["reservations"]["devices"]

    assert exporter["pid"] == "host"
    assert devices == [
        {"driver": "nvidia", "count": "all", "capabilities": ["gpu", "utility"]}
    ]


def test_grafana_gets_the_provisioning_and_the_dashboards():
    grafana = services()["grafana"]
    mounts = {}
    for volume in grafana["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[source] = target

    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["../grafana/json"] == "/var/lib/grafana/dashboards/prom-aiops"
    assert grafana["environment"]["PROMETHEUS_URL"] == "http://127.0.0.1:9090"
