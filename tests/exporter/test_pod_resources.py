"""The PodResources client and GPU-to-pod reader against a real gRPC server on a
unix socket, answering with messages encoded here from the kubelet's api.proto
field numbers: pods, MIG devices, other resources, unknown fields, malformed
answers, a kubelet that is down or slow, and no socket at all."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading

import pytest

from exporter.config import ExporterConfig
from exporter.gpu import GpuReader
from exporter.main import _load_config, _parse_args, build_snapshot
from exporter.nvml_session import NvmlSession
from exporter.pod_resources import (
    GpuPod,
    GpuPodReader,
    PodResourcesClient,
    PodResourcesError,
    decode_list_response,
)
from exporter.pod_resources_metrics import gpu_pod_families
from tests.exporter.exposition import names, parse, series, value
from tests.exporter.fake_kubelet import (
    container,
    devices,
    length_delimited,
    message,
    pod,
    varint,
)
from tests.exporter.fake_nvml import H100, H200, FakeNvml, load_fixture
from tests.exporter.test_xid import FakeKmsg

WAIT = 10.0
UUID0 = "GPU-3b4c6a9e-5f21-8d07-c2e4-71a0f9d3b600"
UUID1 = UUID0[:-2] + "01"
H200_UUID = "GPU-9c2e1f4a-7b3d-4e58-a6c1-02d8e5f7b900"
MIG_UUID = "MIG-5a0c3e7d-1b24-5f69-8d3a-6e2f40b1c711"


def reader_for(path, nvml=None, timeout=WAIT):
    session = NvmlSession(lambda: nvml or FakeNvml(load_fixture(H100), count=2))
    # The GPU reader names the GPUs the pod reader labels.
    GpuReader(session).read()
    client = PodResourcesClient(str(path), timeout_seconds=timeout)
    return GpuPodReader(client, lambda: session.identities)


def test_gpus_of_several_pods_and_containers_are_named(kubelet):
    kubelet.reply = pod(
        "trainer-0",
        "ml",
        container("main", devices("nvidia.com/gpu", UUID0)),
        container("sidecar"),
    ) + pod(
        "infer-7f9c",
        "serving",
        container("model", devices("nvidia.com/gpu", UUID1)),
    )

    sample = reader_for(kubelet.path).read()

    assert sample.available
    assert sample.gpus == (
        GpuPod("0", UUID0, "", "ml", "trainer-0", "main"),
        GpuPod("1", UUID1, "", "serving", "infer-7f9c", "model"),
    )
    assert kubelet.requests == [b""]
    parsed = series(gpu_pod_families(sample))
    assert value(parsed, "aiops_kubelet_pod_resources_available") == 1
    labels = {"mig_uuid": "", "namespace": "ml", "pod": "trainer-0"}
    assert value(
        parsed, "aiops_gpu_pod_info", gpu="0", uuid=UUID0, container="main", **labels
    )


def test_mig_devices_are_named_with_their_parent_gpu(kubelet):
    other_mig = "MIG-0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
    kubelet.reply = pod(
        "mig-job",
        "ml",
        container("a", devices("nvidia.com/mig-3g.71gb", MIG_UUID)),
        container("b", devices("nvidia.com/mig-1g.18gb", other_mig)),
    )
    nvml = FakeNvml(load_fixture(H200), count=1)

    sample = reader_for(kubelet.path, nvml).read()

    assert sample.gpus == (
        # A MIG device NVML does not show keeps its id, without a GPU.
        GpuPod("", "", other_mig, "ml", "mig-job", "b"),
        GpuPod("0", H200_UUID, MIG_UUID, "ml", "mig-job", "a"),
    )


def test_other_resources_are_ignored_and_replicas_and_indices_resolved(kubelet):
    kubelet.reply = pod(
        "mixed",
        "default",
        container(
            "app",
            devices("example.com/fpga", "fpga-0"),
            devices("nvidia.com/gpu.shared", f"{UUID1}::3", f"{UUID1}::4"),
            devices("nvidia.com/gpu", "0"),
        ),
    )

    sample = reader_for(kubelet.path).read()

    # Two time-slicing replicas of one GPU in one container are one series.
    assert sample.gpus == (
        GpuPod("0", UUID0, "", "default", "mixed", "app"),
        GpuPod("1", UUID1, "", "default", "mixed", "app"),
    )


def test_unknown_fields_of_every_wire_type_are_skipped():
    unknown = (
        varint(9 << 3 | 0)
        + varint(300)
        + varint(10 << 3 | 1)
        + bytes(8)
        + varint(11 << 3 | 5)
        + bytes(4)
        + length_delimited(12, b"\x01\x02\x03")
    )
    # Fields of the API the exporter does not read: a device's topology (3), a
    # container's cpu_ids (3, packed) and memory (4).
    topology = message(3, message(1, varint(1 << 3) + varint(0)))
    device = message(
        2,
        length_delimited(1, "nvidia.com/gpu"),
        length_delimited(2, UUID0),
        topology,
        unknown,
    )
    data = unknown + pod(
        "p",
        "ns",
        message(
            3,
            length_delimited(1, "c"),
            device,
            length_delimited(3, varint(2) + varint(3)),
            message(4, length_delimited(1, "memory")),
            unknown,
        ),
        unknown,
    )

    allocations = decode_list_response(data)

    assert [(a.namespace, a.pod, a.container, a.device_id) for a in allocations] == [
        ("ns", "p", "c", UUID0)
    ]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (pod("p", "ns")[:-1], "field 1 needs 7 bytes"),
        (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "varint longer"),
        (varint(1 << 3 | 3), "wire type 3"),
        (varint(1 << 3 | 0) + varint(5), "expected a message"),
        (message(1, length_delimited(1, b"\xff\xfe")), "not UTF-8"),
        (b"\x00", "field number 0"),
    ],
)
def test_malformed_answers_are_errors_that_say_what_is_wrong(data, fragment):
    with pytest.raises(PodResourcesError, match=fragment):
        decode_list_response(data)


def snapshot_with_kubelet(path):
    config = ExporterConfig(
        source_timeout_seconds=2.0, kubelet_pod_resources_socket=str(path)
    )
    nvml = FakeNvml(load_fixture(H100), count=2)
    snapshot, close = build_snapshot(
        config, load_nvml=lambda: nvml, open_device=lambda path: FakeKmsg()
    )
    return snapshot, close


def test_a_malformed_answer_is_counted_and_the_rest_keeps_serving(kubelet, caplog):
    kubelet.reply = pod("p", "ns", container("c", devices("nvidia.com/gpu", UUID0)))
    snapshot, close = snapshot_with_kubelet(kubelet.path)
    try:
        snapshot.refresh()
        kubelet.reply = b"\x0a\x05abc"
        with caplog.at_level(logging.WARNING):
            snapshot.refresh()
            snapshot.refresh()
        parsed = parse(snapshot.exposition().decode())
    finally:
        close()

    errors = "aiops_exporter_source_errors_total"
    assert value(parsed, errors, source="pod_resources") == 2
    assert value(parsed, errors, source="gpu") == 0
    assert value(parsed, "aiops_gpu_power_limit_watts", gpu="0", uuid=UUID0) == 700
    assert "aiops_host_logical_cpus" in names(parsed)
    warnings = [r.getMessage() for r in caplog.records if "source failed" in r.msg]
    assert len(warnings) == 1
    assert "unreadable List response" in warnings[0]


def test_a_kubelet_that_is_down_is_an_error_not_a_crash(socket_dir):
    # What a stopped kubelet leaves: a socket file nobody accepts on.
    path = socket_dir / "kubelet.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
        snapshot, close = snapshot_with_kubelet(path)
        try:
            snapshot.refresh()
            parsed = parse(snapshot.exposition().decode())
        finally:
            close()

    errors = "aiops_exporter_source_errors_total"
    assert value(parsed, errors, source="pod_resources") == 1
    assert value(parsed, "aiops_nvml_available") == 1
    with pytest.raises(PodResourcesError, match="UNAVAILABLE"):
        reader_for(path).read()


def test_a_slow_kubelet_runs_into_the_calls_deadline(kubelet):
    kubelet.block = threading.Event()

    with pytest.raises(PodResourcesError, match="DEADLINE_EXCEEDED"):
        reader_for(kubelet.path, timeout=0.2).read()


def test_no_socket_is_quiet_and_logged_once(socket_dir, caplog):
    reader = reader_for(socket_dir / "kubelet.sock")

    with caplog.at_level(logging.INFO, logger="exporter.pod_resources"):
        samples = [reader.read() for _ in range(3)]

    assert [s.available for s in samples] == [False] * 3
    assert series(gpu_pod_families(samples[0])) == {
        ("aiops_kubelet_pod_resources_available", frozenset()): 0
    }
    infos = [
        r
        for r in caplog.records
        if r.name == "exporter.pod_resources" and r.levelno >= logging.INFO
    ]
    assert len(infos) == 1
    assert "no kubelet PodResources socket" in infos[0].getMessage()


def test_config_and_flag_set_the_socket(tmp_path):
    flag = _load_config(
        _parse_args(["--kubelet.pod-resources-socket", str(tmp_path / "k.sock")])
    )
    default = ExporterConfig()

    assert flag.kubelet_pod_resources_socket == str(tmp_path / "k.sock")
    assert default.kubelet_pod_resources_socket == (
        "/var/lib/kubelet/pod-resources/kubelet.sock"
    )
    off = dataclasses.replace(default, kubelet_pod_resources_socket="")
    snapshot, close = build_snapshot(
        off, load_nvml=lambda: FakeNvml(load_fixture(H100), missing=True)
    )
    close()
    assert "pod_resources" not in snapshot.exposition().decode()


def test_a_socket_path_out_of_reach_is_an_error_not_absence(socket_dir):
    (socket_dir / "pod-resources").write_text("a file, not the directory")

    with pytest.raises(PodResourcesError, match="cannot reach"):
        reader_for(socket_dir / "pod-resources" / "kubelet.sock").read()


def test_a_file_that_is_not_a_socket_is_named_as_such(socket_dir):
    (socket_dir / "kubelet.sock").write_text("a file, not a socket")

    with pytest.raises(PodResourcesError, match="is not a socket"):
        reader_for(socket_dir / "kubelet.sock").read()
