"""parse_cgroup over /proc/<pid>/cgroup files as docker, containerd, cri-o,
podman and systemd write them, in cgroup v1, v2 and hybrid layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cgroup import CgroupIdentity, parse_cgroup

CGROUPS = Path(__file__).parent / "fixtures" / "cgroup"

DOCKER_ID = "8f3c2a1b7d9e4f60a5b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1"
CRIO_ID = "3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d"
DOCKER_V2_ID = "2b7e9c4d1a3f5e6b8c0d2e4f6a8b0c1d3e5f7a9b1c3d5e7f9a0b2c4d6e8f0a1b"
KUBE_V1_ID = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"
KUBE_V1_SYSTEMD_ID = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"
KUBE_V2_ID = "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f"
PODMAN_ID = "4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
CRIO_POD = "7e8f9a0b-1c2d-4e3f-a5b6-c7d8e9f0a1b2"


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("docker-v1-cgroupfs", CgroupIdentity(container_id=DOCKER_ID)),
        (
            "docker-v2-systemd",
            CgroupIdentity(container_id=DOCKER_V2_ID),
        ),
        (
            "kubepods-v1-cgroupfs-containerd",
            CgroupIdentity(
                container_id=KUBE_V1_ID,
                pod_uid="6b0f7c2e-3d1a-4b5c-9e8f-7a6b5c4d3e2f",
            ),
        ),
        (
            "kubepods-v1-systemd-containerd",
            CgroupIdentity(
                container_id=KUBE_V1_SYSTEMD_ID,
                pod_uid="1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b",
            ),
        ),
        (
            "kubepods-v2-systemd-containerd",
            CgroupIdentity(
                container_id=KUBE_V2_ID,
                pod_uid="d4c3b2a1-0f9e-4d8c-b7a6-958473625140",
            ),
        ),
        (
            "kubepods-v2-systemd-crio",
            CgroupIdentity(container_id=CRIO_ID, pod_uid=CRIO_POD),
        ),
        # cri-o's monitor process is counted with the container it watches.
        (
            "kubepods-v2-crio-conmon",
            CgroupIdentity(container_id=CRIO_ID, pod_uid=CRIO_POD),
        ),
        (
            "podman-v2-systemd",
            CgroupIdentity(
                container_id=PODMAN_ID,
                unit="user@1000.service",
            ),
        ),
        ("systemd-service-v2", CgroupIdentity(unit="nvidia-persistenced.service")),
        ("systemd-user-service-v2", CgroupIdentity(unit="jupyter.service")),
        ("systemd-service-v1-hybrid", CgroupIdentity(unit="prometheus.service")),
        ("session-scope-v2", CgroupIdentity()),
        ("host-root-v1", CgroupIdentity()),
    ],
)
def test_real_layouts(fixture, expected):
    text = (CGROUPS / f"{fixture}.txt").read_text()

    assert parse_cgroup(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "0::", "1:cpu\n", "0::/docker/not-a-container-id\n"],
)
def test_unknown_layouts_name_nothing(text):
    assert parse_cgroup(text) == CgroupIdentity()
