"""The HTTP side in-process: routes, every source wired over this host's /proc
and a fake NVML, and /metrics answering while an NVML call hangs."""

from __future__ import annotations

import dataclasses
import threading
import time

import psutil
import pytest
import requests

from exporter.config import ExporterConfig
from exporter.loop import CollectionLoop
from exporter.main import build_exposition, build_snapshot
from exporter.server import MetricsServer, make_app
from exporter.snapshot import Snapshot, Source
from tests.exporter.exposition import names, parse, scrape, value
from tests.exporter.fake_nvml import H100, FakeNvml, load_fixture
from tests.exporter.test_snapshot import registry_for
from tests.exporter.test_xid import FakeKmsg

WAIT = 10.0
UUID1 = "GPU-3b4c6a9e-5f21-8d07-c2e4-71a0f9d3b601"
SOURCES = ("processes", "gpu", "gpu_processes", "xid")


@pytest.fixture
def serve():
    """Start a MetricsServer on a free port of 127.0.0.1; yields its base URL."""
    servers = []

    def start(metrics):
        server = MetricsServer("127.0.0.1:0", make_app(metrics))
        servers.append(server)
        server.start()
        host, port = server.address
        return f"http://{host}:{port}"

    yield start
    for server in servers:
        server.stop()


def snapshot_over(nvml, config=None, kmsg=None):
    # Never the host's own kubelet: test_pod_resources serves a fake one.
    config = dataclasses.replace(
        config or ExporterConfig(), kubelet_pod_resources_socket=""
    )
    return build_snapshot(
        config,
        load_nvml=lambda: nvml,
        open_device=lambda path: kmsg if kmsg is not None else FakeKmsg(),
    )


def test_routes(serve):
    snapshot, _ = snapshot_over(FakeNvml(load_fixture(H100), missing=True))
    base = serve(build_exposition(snapshot))

    healthy = requests.get(f"{base}/-/healthy", timeout=WAIT)
    index = requests.get(f"{base}/", timeout=WAIT)
    missing = requests.get(f"{base}/metrics/extra", timeout=WAIT)

    assert (healthy.status_code, healthy.text) == (200, "Healthy\n")
    assert index.status_code == 200
    assert 'href="metrics"' in index.text
    assert missing.status_code == 404


def test_metrics_from_real_proc_and_fake_gpus(serve):
    nvml = FakeNvml(load_fixture(H100), count=2)
    kmsg = FakeKmsg(["4,1,1,-;NVRM: Xid (PCI:0000:38:00): 13, pid=1, x\n"])
    snapshot, close = snapshot_over(nvml, ExporterConfig(top_groups=3), kmsg)
    snapshot.refresh()
    snapshot.refresh()

    response = requests.get(
        f"{serve(build_exposition(snapshot))}/metrics", timeout=WAIT
    )
    parsed = parse(response.text)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert value(parsed, "aiops_host_logical_cpus") == psutil.cpu_count()
    assert value(parsed, "aiops_host_memory_total_bytes") == (
        psutil.virtual_memory().total
    )
    groups = [
        dict(labels)
        for name, labels in parsed
        if name == "aiops_process_group_processes"
    ]
    assert len(groups) == 4
    assert all({"command", "user"} <= set(group) for group in groups)
    assert {"command": "(other)", "user": "(other)"}.items() <= groups[-1].items()
    assert value(parsed, "aiops_nvml_available") == 1
    assert value(parsed, "aiops_gpu_power_limit_watts", gpu="1", uuid=UUID1) == 700
    assert "aiops_gpu_xid_errors_total" in names(parsed)
    for source in SOURCES:
        assert value(parsed, "aiops_exporter_source_errors_total", source=source) == 0
    # The exporter's own process metrics come from the same registry.
    assert "process_resident_memory_bytes" in names(parsed)
    # Each source's text is stored whole; together they must still be one
    # valid exposition, without a family declared twice.
    types = [
        line.split()[2]
        for line in response.text.splitlines()
        if line.startswith("# TYPE")
    ]
    assert len(types) == len(set(types))
    assert parsed.items() >= scrape(registry_for(snapshot)).items()

    close()


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
    base = serve(build_exposition(snapshot))
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


def test_a_hung_nvml_call_leaves_its_gpus_out_and_the_rest_served(serve):
    release = threading.Event()
    nvml = FakeNvml(
        load_fixture(H100),
        count=2,
        hang={"nvmlDeviceGetPowerUsage": release},
    )
    # Room for the real /proc on a busy host; each GPU gets half of it.
    config = ExporterConfig(source_timeout_seconds=2.0)
    snapshot, close = snapshot_over(nvml, config)
    base = serve(build_exposition(snapshot))
    try:
        snapshot.refresh()
        started = time.monotonic()
        response = requests.get(f"{base}/metrics", timeout=2)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        assert snapshot.join(WAIT)
        close()

    parsed = parse(response.text)
    assert elapsed < 1.0
    # Each GPU's read ran out of its own time, not the gpu source's.
    assert value(parsed, "aiops_exporter_source_errors_total", source="gpu") == 0
    for gpu in ("0", "1"):
        assert (
            value(
                parsed,
                "aiops_gpu_health_state",
                gpu=gpu,
                uuid="",
                state="not_responding",
            )
            == 1
        )
    assert value(parsed, "aiops_exporter_source_errors_total", source="processes") == 0
    assert "aiops_gpu_power_watts" not in names(parsed)
    assert value(parsed, "aiops_host_logical_cpus") == psutil.cpu_count()
