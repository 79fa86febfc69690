"""The whole /metrics page, with every feature the fake NVML and a stand-in
kubelet can turn on, checked by Prometheus' own `promtool check metrics`."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from exporter.config import ExporterConfig
from exporter.main import build_exposition, build_snapshot
from tests.exporter.exposition import names, parse
from tests.exporter.fake_kubelet import container, devices, pod
from tests.exporter.fake_nvml import H100, H200, FakeNvml, load_fixture
from tests.exporter.test_xid import FakeKmsg

GIB = 1 << 30
WAIT = 30.0


def loaded_nvml(fixture):
    """A fake of two GPUs with fans, a compute process of this test, SM samples
    and an Xid event waiting."""
    nvml = FakeNvml(load_fixture(fixture), count=2)
    for gpu in range(2):
        nvml.set(gpu, "nvmlDeviceGetNumFans()", 2)
        nvml.set(gpu, "nvmlDeviceGetFanSpeed_v2(0)", 40)
        nvml.set(gpu, "nvmlDeviceGetFanSpeed_v2(1)", 42)
    nvml.processes = {0: [(os.getpid(), 3 * GIB)], 1: [(os.getpid(), GIB)]}
    nvml.samples = {0: [(os.getpid(), 1_000, 55)]}
    nvml.events = [(1, 79)]
    return nvml


@pytest.mark.parametrize(
    ("fixture", "per_pid"), [(H100, False), (H100, True), (H200, False)]
)
def test_promtool_finds_nothing_to_complain_about(kubelet, fixture, per_pid):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; `make test` installs it")
    nvml = loaded_nvml(fixture)
    uuid = nvml.devices[0]["device"]["nvmlDeviceGetUUID()"]["value"]
    kubelet.reply = pod(
        "job-0", "ml", container("main", devices("nvidia.com/gpu", uuid))
    )
    kmsg = FakeKmsg(["4,1,1,-;NVRM: Xid (PCI:0000:18:00): 13, pid=1, x\n"])
    config = ExporterConfig(
        gpu_processes_per_pid=per_pid,
        process_cmdline=per_pid,
        expected_gpus=2,
        kubelet_pod_resources_socket=kubelet.path,
    )
    snapshot, close = build_snapshot(
        config, load_nvml=lambda: nvml, open_device=lambda path: kmsg
    )
    try:
        # Twice, so that rates over the interval (CPU shares) have a past.
        snapshot.refresh()
        snapshot.refresh()
        text = build_exposition(snapshot)()
    finally:
        close()

    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        timeout=WAIT,
        check=False,
    )

    complaints = (result.stdout + result.stderr).decode()
    assert (result.returncode, complaints) == (0, "")
    # The page really held every feature, not an empty exposition.
    served = names(parse(text.decode()))
    for name in (
        "aiops_host_logical_cpus",
        "aiops_gpu_fan_speed_ratio",
        "aiops_gpu_process_memory_used_bytes",
        "aiops_gpu_xid_errors_total",
        "aiops_gpu_pod_info",
        "aiops_exporter_source_errors_total",
    ):
        assert name in served
