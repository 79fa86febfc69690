"""The HTTP side in-process: routes, the wired sources over a fake NVML, and
/metrics answering while a source hangs."""

from __future__ import annotations

import threading

import psutil
import pytest
import requests

from exporter.config import ExporterConfig
from exporter.loop import CollectionLoop
from exporter.main import build_registry, build_snapshot
from exporter.server import MetricsServer, make_app
from exporter.snapshot import Snapshot, Source
from tests.exporter.exposition import names, parse, value
from tests.exporter.fake_nvml import FakeNvml, h100_host

WAIT = 10.0


@pytest.fixture
def serve():
    """Start a MetricsServer on a free port of 127.0.0.1; yields its base URL."""
    servers = []

    def start(registry):
        server = MetricsServer("127.0.0.1:0", make_app(registry))
        servers.append(server)
        server.start()
        host, port = server.address
        return f"http://{host}:{port}"

    yield start
    for server in servers:
        server.stop()


def test_routes(serve):
    snapshot, _ = build_snapshot(ExporterConfig(), load_nvml=lambda: FakeNvml({}))
    base = serve(build_registry(snapshot))

    healthy = requests.get(f"{base}/-/healthy", timeout=WAIT)
    index = requests.get(f"{base}/", timeout=WAIT)
    missing = requests.get(f"{base}/metrics/extra", timeout=WAIT)

    assert (healthy.status_code, healthy.text) == (200, "Healthy\n")
    assert index.status_code == 200
    assert 'href="metrics"' in index.text
    assert missing.status_code == 404


def test_metrics_from_real_proc_and_fake_gpus(serve):
    fixture = h100_host(2)
    snapshot, gpus = build_snapshot(
        ExporterConfig(top_groups=3), load_nvml=lambda: FakeNvml(fixture)
    )
    snapshot.refresh()
    snapshot.refresh()

    response = requests.get(f"{serve(build_registry(snapshot))}/metrics", timeout=WAIT)
    parsed = parse(response.text)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert value(parsed, "aiops_host_cpu_count") == psutil.cpu_count()
    assert value(parsed, "aiops_host_memory_total_bytes") == (
        psutil.virtual_memory().total
    )
    groups = [
        dict(labels)
        for name, labels in parsed
        if name == "aiops_process_group_processes"
    ]
    assert len(groups) == 4
    assert {"command": "(other)", "user": "(other)"} in groups
    uuid = fixture["gpus"][1]["uuid"]
    assert value(parsed, "aiops_nvml_available") == 1
    assert value(parsed, "aiops_gpu_power_limit_watts", gpu="1", uuid=uuid) == 700
    for source in ("processes", "gpu"):
        assert value(parsed, "aiops_exporter_source_errors_total", source=source) == 0
    # The exporter's own process metrics come from the same registry.
    assert "process_resident_memory_bytes" in names(parsed)

    gpus.close()


def test_metrics_answer_while_a_source_hangs(serve):
    entered, release = threading.Event(), threading.Event()

    def hang():
        entered.set()
        release.wait(WAIT)
        return []

    snapshot = Snapshot(
        [Source("gpu", hang)], timeout_seconds=60, stale_after_seconds=120
    )
    loop = CollectionLoop(snapshot, interval_seconds=60)
    base = serve(build_registry(snapshot))
    loop.start()
    try:
        assert entered.wait(WAIT)
        response = requests.get(f"{base}/metrics", timeout=2)
    finally:
        release.set()
        assert loop.stop(WAIT)

    parsed = parse(response.text)
    assert response.status_code == 200
    assert value(parsed, "aiops_exporter_source_errors_total", source="gpu") == 0
    assert (
        value(
            parsed, "aiops_exporter_source_last_success_timestamp_seconds", source="gpu"
        )
        == 0
    )
