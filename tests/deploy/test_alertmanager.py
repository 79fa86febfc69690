"""deploy/alertmanager.yml routes every rule's alert to the receiver (checked
with amtool), and its inhibitions silence what they should in a real
Alertmanager on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from aiops_cli.stack import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WAIT = 20.0


def alert_names() -> list[str]:
    names = []
    for path in sorted((DEPLOY / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names += [rule["alert"] for rule in group["rules"] if "alert" in rule]
    return names


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    shutil.copy(DEPLOY / "alertmanager.yml", tmp_path)
    (tmp_path / "webhook-token").write_text("secret")
    return tmp_path


def routes_test(config_dir: Path, *labels: str) -> str:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is not installed; `make test` installs it")
    result = subprocess.run(
        [
            amtool,
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.yml",
            "--verify.receivers=aiops-webhook",
            "--tree",
            *labels,
        ],
        cwd=config_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("alertname", alert_names())
def test_every_alert_reaches_the_receiver(config_dir, alertname):
    tree = routes_test(
        config_dir, f"alertname={alertname}", "instance=gpu-1:9842", "gpu=0"
    )

    gpu_route = 'alertname=~"AiopsGpu.+"' in tree.split("Matching routes:")[1]
    assert gpu_route == alertname.startswith("AiopsGpu")


@pytest.fixture
def alertmanager(config_dir: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("needs Debian's prometheus-alertmanager")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (config_dir / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            "--config.file=alertmanager.yml",
            f"--storage.path={config_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        cwd=config_dir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + WAIT
        while True:
            assert process.poll() is None, (config_dir / "alertmanager.log").read_text()
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "alertmanager not ready"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(WAIT)
        log.close()


def post(url: str, *alerts: dict[str, str]) -> None:
    now = datetime.now(UTC)
    body = [
        {
            "labels": labels,
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=10)).isoformat(),
        }
        for labels in alerts
    ]
    requests.post(f"{url}/api/v2/alerts", json=body, timeout=WAIT).raise_for_status()


def states(url: str, expected: dict[tuple[str, str, str], str]) -> dict:
    """(alertname, instance, gpu) -> active or suppressed, as Alertmanager has
    them once they equal `expected` or the wait is over: the inhibitor learns
    of new source alerts shortly after the API has stored them."""
    deadline = time.monotonic() + WAIT
    while True:
        alerts = requests.get(f"{url}/api/v2/alerts", timeout=WAIT).json()
        seen = {
            (
                a["labels"]["alertname"],
                a["labels"].get("instance", ""),
                a["labels"].get("gpu", ""),
            ): a["status"]["state"]
            for a in alerts
        }
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def alert(name: str, instance: str, gpu: str = "", **extra: str) -> dict:
    labels = {"alertname": name, "instance": instance, **extra}
    return labels | ({"gpu": gpu} if gpu else {})


@pytest.mark.integration
def test_a_host_down_silences_its_gpu_alerts_only(alertmanager):
    post(
        alertmanager,
        alert("AiopsExporterDown", "gpu-1:9842", severity="critical"),
        alert("AiopsGpuThermalThrottling", "gpu-1:9842", "0"),
        alert("AiopsSeriesAnomaly", "gpu-1:9842", "1", query="gpu_utilization"),
        alert("AiopsExporterSourceStale", "gpu-1:9842"),
        alert("AiopsGpuThermalThrottling", "gpu-2:9842", "0"),
    )

    expected = {
        ("AiopsExporterDown", "gpu-1:9842", ""): "active",
        ("AiopsGpuThermalThrottling", "gpu-1:9842", "0"): "suppressed",
        ("AiopsSeriesAnomaly", "gpu-1:9842", "1"): "suppressed",
        ("AiopsExporterSourceStale", "gpu-1:9842", ""): "suppressed",
        ("AiopsGpuThermalThrottling", "gpu-2:9842", "0"): "active",
    }
    assert states(alertmanager, expected) == expected


@pytest.mark.integration
def test_a_lost_gpu_silences_its_own_other_alerts(alertmanager):
    post(
        alertmanager,
        alert("AiopsGpuLost", "gpu-1:9842", "0"),
        alert("AiopsGpuXidRecoveryNeeded", "gpu-1:9842", "0"),
        alert("AiopsGpuXidRecoveryNeeded", "gpu-1:9842", "1"),
    )

    expected = {
        ("AiopsGpuLost", "gpu-1:9842", "0"): "active",
        ("AiopsGpuXidRecoveryNeeded", "gpu-1:9842", "0"): "suppressed",
        ("AiopsGpuXidRecoveryNeeded", "gpu-1:9842", "1"): "active",
    }
    assert states(alertmanager, expected) == expected


@pytest.mark.integration
def test_a_detector_without_prometheus_silences_what_that_causes(alertmanager):
    post(
        alertmanager,
        alert("AiopsDetectorPrometheusDown", "detector:9843"),
        alert("AiopsDetectorQueriesFailing", "detector:9843"),
        alert("AiopsDetectorStale", "detector:9843"),
        alert("AiopsOptimizerStale", "detector:9843"),
    )

    expected = {
        ("AiopsDetectorPrometheusDown", "detector:9843", ""): "active",
        ("AiopsDetectorQueriesFailing", "detector:9843", ""): "suppressed",
        ("AiopsDetectorStale", "detector:9843", ""): "suppressed",
        ("AiopsOptimizerStale", "detector:9843", ""): "suppressed",
    }
    assert states(alertmanager, expected) == expected


@pytest.mark.integration
def test_a_failing_query_silences_its_own_detector_staleness(alertmanager):
    post(
        alertmanager,
        alert("AiopsDetectorQueriesFailing", "detector-0:9843"),
        alert("AiopsDetectorStale", "detector-0:9843"),
        alert("AiopsDetectorStale", "detector-1:9843"),
    )

    expected = {
        ("AiopsDetectorQueriesFailing", "detector-0:9843", ""): "active",
        ("AiopsDetectorStale", "detector-0:9843", ""): "suppressed",
        ("AiopsDetectorStale", "detector-1:9843", ""): "active",
    }
    assert states(alertmanager, expected) == expected


@pytest.mark.integration
def test_a_hung_gpu_silences_its_own_other_alerts_but_not_a_lost_one(alertmanager):
    post(
        alertmanager,
        alert("AiopsGpuNotResponding", "gpu-1:9842", "0"),
        alert("AiopsGpuXidRecoveryNeeded", "gpu-1:9842", "0"),
        alert("AiopsGpuNotResponding", "gpu-1:9842", "1"),
        alert("AiopsGpuLost", "gpu-1:9842", "1"),
        alert("AiopsGpuThermalThrottling", "gpu-1:9842", "2"),
    )

    # GPU 1 is a hang turning into a lost GPU: both stay visible, neither
    # explains the other away.
    expected = {
        ("AiopsGpuNotResponding", "gpu-1:9842", "0"): "active",
        ("AiopsGpuXidRecoveryNeeded", "gpu-1:9842", "0"): "suppressed",
        ("AiopsGpuNotResponding", "gpu-1:9842", "1"): "active",
        ("AiopsGpuLost", "gpu-1:9842", "1"): "active",
        ("AiopsGpuThermalThrottling", "gpu-1:9842", "2"): "active",
    }
    assert states(alertmanager, expected) == expected
