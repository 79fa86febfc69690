"""GpuProcessReader: GPU memory and SM share per container and command or per
PID, named from a /proc tree, with NVML's sample timestamps honoured and a GPU
hung in NVML left out."""

from __future__ import annotations

import threading

import pytest

from exporter.gpu import GpuReader
from exporter.gpu_process_metrics import gpu_process_families
from exporter.gpu_processes import UNKNOWN, GpuProcessReader
from exporter.identity import IdentityCache
from exporter.nvml_session import NvmlSession
from tests.exporter.exposition import names, series, value
from tests.exporter.fake_nvml import H100, H200, FakeNvml, load_fixture
from tests.exporter.proc_tree import ProcTree

GIB = 1 << 30
UUID0 = "GPU-3b4c6a9e-5f21-8d07-c2e4-71a0f9d3b600"
CONTAINER = "c" * 64
POD_UID = "d4c3b2a1-0f9e-4d8c-b7a6-958473625140"
POD_CGROUP = (
    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
    "d4c3b2a1_0f9e_4d8c_b7a6_958473625140.slice/cri-containerd-"
    f"{CONTAINER}.scope\n"
)


class Setup:
    def __init__(self, tmp_path, fixture=H100, count=2, per_pid=False, cmdline=False):
        self.tree = ProcTree(tmp_path / "proc")
        self.nvml = FakeNvml(load_fixture(fixture), count=count)
        self.session = NvmlSession(lambda: self.nvml)
        procfs = self.tree.procfs()
        identities = IdentityCache(
            procfs, user_names={1000: "alice", 0: "root"}.get, cmdline=cmdline
        )
        self.reader = GpuProcessReader(self.session, procfs, identities, per_pid)
        # The GPU reader names the GPUs the process reader labels.
        GpuReader(self.session).read()

    def scrape(self):
        return series(gpu_process_families(self.reader.read()))


def labels(gpu="0", uuid=UUID0, command="python3", user="alice", **extra):
    base = {"container_id": "", "pod_uid": "", "pid": ""}
    return {"gpu": gpu, "uuid": uuid, "command": command, "user": user, **base, **extra}


@pytest.fixture
def setup(tmp_path):
    return Setup(tmp_path)


def test_processes_of_one_pod_container_are_summed(setup):
    for pid in (11, 12):
        setup.tree.add(pid, "python3", uid=1000, cgroup=POD_CGROUP)
    setup.tree.add(21, "python3", uid=1000)
    setup.nvml.processes = {0: [(11, 10 * GIB), (12, 6 * GIB), (21, 1 * GIB)]}
    setup.nvml.samples = {0: [(11, 1_000, 40), (12, 1_000, 30), (21, 1_000, 5)]}

    parsed = setup.scrape()

    pod = labels(container_id=CONTAINER, pod_uid=POD_UID)
    assert value(parsed, "aiops_gpu_process_memory_used_bytes", **pod) == 16 * GIB
    assert value(parsed, "aiops_gpu_processes", **pod) == 2
    assert value(parsed, "aiops_gpu_process_sm_utilization_ratio", **pod) == (
        pytest.approx(0.7)
    )
    assert value(parsed, "aiops_gpu_process_memory_used_bytes", **labels()) == GIB
    assert "aiops_gpu_process_info" not in names(parsed)


def test_samples_are_not_counted_twice(setup):
    setup.tree.add(11, "python3", uid=1000)
    setup.nvml.processes = {0: [(11, GIB)]}
    setup.nvml.samples = {0: [(11, 1_000, 80), (11, 2_000, 60)]}

    first = setup.scrape()
    # No sample newer than the last one seen: the process ran no kernel since.
    second = setup.scrape()
    setup.nvml.samples[0].append((11, 3_000, 20))
    third = setup.scrape()

    name = "aiops_gpu_process_sm_utilization_ratio"
    assert value(first, name, **labels()) == pytest.approx(0.7)
    assert value(second, name, **labels()) == 0
    assert value(third, name, **labels()) == pytest.approx(0.2)


def test_per_pid_series_carry_the_redacted_command_line(tmp_path):
    setup = Setup(tmp_path, per_pid=True, cmdline=True)
    setup.tree.add(11, "python3", uid=1000, cmdline=("python3", "--token", "abc"))
    setup.nvml.processes = {1: [(11, GIB)]}

    parsed = setup.scrape()

    mine = labels(gpu="1", uuid=UUID0[:-2] + "01", pid="11")
    assert value(parsed, "aiops_gpu_process_memory_used_bytes", **mine) == GIB
    assert value(
        parsed, "aiops_gpu_process_info", **mine, cmdline="python3 --token <redacted>"
    )


def test_exited_processes_disappear(setup):
    setup.tree.add(11, "python3", uid=1000)
    setup.nvml.processes = {0: [(11, GIB)]}
    assert setup.scrape()

    setup.nvml.processes = {0: []}

    assert setup.scrape() == {}


def test_process_outside_this_pid_namespace_keeps_nvmls_name(setup):
    setup.nvml.processes = {0: [(777, GIB)]}
    setup.nvml.process_names = {777: "/opt/conda/bin/python3.11"}

    parsed = setup.scrape()

    unknown = labels(command="python3.11", user=UNKNOWN)
    assert value(parsed, "aiops_gpu_process_memory_used_bytes", **unknown) == GIB


def test_mig_gpu_has_memory_but_no_sm_share(tmp_path):
    # The H200 fixture runs pid 4242 in a MIG instance, where NVML gives no
    # per-process utilization, and pid 4242 is not in this /proc tree.
    setup = Setup(tmp_path, fixture=H200, count=1)

    parsed = setup.scrape()

    uuid = "GPU-9c2e1f4a-7b3d-4e58-a6c1-02d8e5f7b900"
    mine = labels(uuid=uuid, command="python3.11", user=UNKNOWN)
    assert value(parsed, "aiops_gpu_process_memory_used_bytes", **mine) == 36507222016
    assert "aiops_gpu_process_sm_utilization_ratio" not in names(parsed)


def test_without_nvml_nothing_is_exported(tmp_path):
    setup = Setup(tmp_path)
    setup.nvml.missing = True
    setup.session.close()

    sample = setup.reader.read()

    assert not sample.available
    assert gpu_process_families(sample) == []


def test_pids_the_host_sampler_named_are_not_read_again(tmp_path):
    setup = Setup(tmp_path)
    setup.tree.add(11, "python3", uid=1000, start=10.0, cgroup=POD_CGROUP)
    setup.tree.vanish_stat(11)
    setup.reader = GpuProcessReader(
        setup.session,
        setup.tree.procfs(),
        IdentityCache(setup.tree.procfs(), user_names={1000: "alice"}.get),
        known=lambda: {11: (1000, "python3")},
    )
    setup.nvml.processes = {0: [(11, GIB)]}

    parsed = setup.scrape()

    pod = labels(container_id=CONTAINER, pod_uid=POD_UID)
    assert value(parsed, "aiops_gpu_processes", **pod) == 1


def test_a_gpu_hung_in_nvml_leaves_only_its_processes_out(tmp_path):
    setup = Setup(tmp_path)
    setup.tree.add(11, "python3", uid=1000)
    setup.tree.add(12, "python3", uid=1000)
    setup.nvml.processes = {0: [(11, GIB)], 1: [(12, 2 * GIB)]}
    release = threading.Event()
    setup.nvml.hang[("nvmlDeviceGetComputeRunningProcesses", 1)] = release
    procfs = setup.tree.procfs()
    reader = GpuProcessReader(
        setup.session, procfs, IdentityCache(procfs, {1000: "alice"}.get),
        timeout_seconds=0.5,
    )  # fmt: skip

    try:
        parsed = series(gpu_process_families(reader.read()))
    finally:
        release.set()
    assert reader.join(10.0)

    assert value(parsed, "aiops_gpu_process_memory_used_bytes", **labels()) == GIB
    gpu1 = labels(gpu="1", uuid=UUID0[:-2] + "01")
    assert value(parsed, "aiops_gpu_process_memory_used_bytes", **gpu1) is None
