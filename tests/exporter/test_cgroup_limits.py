"""Cgroup limits of process groups: cgroup v2 and v1 trees in the kernel's
formats, groups that own one cgroup and groups that do not, the mount table,
and this host's own cgroup read through the real /sys/fs/cgroup."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from exporter.cgroup_limits import CgroupLimitReader, CgroupLimits, read_text
from exporter.cgroup_mounts import (
    Mount,
    controller_paths,
    directory_of,
    parse_mountinfo,
)
from exporter.host_metrics import process_families
from exporter.identity import IdentityCache
from exporter.processes import ProcessSampler
from exporter.procfs import ProcFs
from tests.exporter.cgroup_tree import (
    V1_NO_MEMORY_LIMIT,
    V1_OOM_CONTROL,
    V2_MEMORY_EVENTS,
    CgroupTree,
)
from tests.exporter.exposition import names, registry_of, series, value
from tests.exporter.proc_tree import ProcTree

GIB = 1 << 30
USERS = {0: "root", 1000: "alice", 1001: "bob"}
CONTAINER = "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f"
DOCKER_SCOPE = f"/system.slice/docker-{CONTAINER}.scope"
# cgroupfs driver on v1: the same path in every hierarchy, v2 left at the root.
V1_DOCKER = (
    f"12:memory:/docker/{CONTAINER}\n4:cpu,cpuacct:/docker/{CONTAINER}\n"
    f"1:name=systemd:/docker/{CONTAINER}\n0::/\n"
)
LIMITS = (
    "aiops_process_group_cpu_limit_cores",
    "aiops_process_group_memory_limit_bytes",
    "aiops_process_group_memory_high_bytes",
    "aiops_process_group_oom_kills_total",
)
TIMEOUT = 30.0


class Host:
    """A /proc tree and a cgroup tree of one version, and samplers over both."""

    def __init__(self, tmp_path: Path, version: int) -> None:
        self.tree = ProcTree(tmp_path / "proc")
        self.cgroups = CgroupTree(tmp_path / "cgroup", tmp_path / "proc", version)
        self.procfs = self.tree.procfs()

    def sampler(self, grouping="command", reader=None) -> ProcessSampler:
        identities = IdentityCache(self.procfs, user_names=USERS.get)
        return ProcessSampler(
            10, self.procfs, identities, grouping=grouping, cgroups=reader
        )

    def scrape(self, grouping="command"):
        return series(process_families(self.sampler(grouping).sample()))


def v2(path: str, cgroup_text: str | None = None) -> str:
    return cgroup_text or f"0::{path}\n"


def group_labels(parsed, **match):
    """The labels of the one resident-memory series whose labels include `match`."""
    found = [
        dict(labels)
        for name, labels in parsed
        if name == "aiops_process_group_resident_memory_bytes"
        and match.items() <= dict(labels).items()
    ]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def host_v2(tmp_path):
    return Host(tmp_path, 2)


@pytest.fixture
def host_v1(tmp_path):
    return Host(tmp_path, 1)


def test_v2_container_limits_carry_the_group_labels(host_v2):
    host_v2.tree.add(11, "python", uid=1000, start=5.0, cgroup=v2(DOCKER_SCOPE))
    host_v2.tree.add(12, "worker", uid=1001, start=6.0, cgroup=v2(DOCKER_SCOPE))
    host_v2.cgroups.write(
        DOCKER_SCOPE,
        {
            "cpu.max": "150000 100000\n",
            "memory.max": "2147483648\n",
            "memory.high": "1610612736\n",
            "memory.events": V2_MEMORY_EVENTS.format(high=9, max=4, oom=2, oom_kill=1),
        },
    )

    parsed = host_v2.scrape("container")

    labels = group_labels(parsed, container_id=CONTAINER)
    assert labels["command"] == "python"
    assert value(parsed, LIMITS[0], **labels) == pytest.approx(1.5)
    assert value(parsed, LIMITS[1], **labels) == 2 * GIB
    assert value(parsed, LIMITS[2], **labels) == 1.5 * GIB
    assert value(parsed, LIMITS[3], **labels) == 1


def test_v2_unlimited_container_has_no_limit_series(host_v2):
    host_v2.tree.add(11, "python", cgroup=v2(DOCKER_SCOPE))
    host_v2.cgroups.write(
        DOCKER_SCOPE,
        {
            "cpu.max": "max 100000\n",
            "memory.max": "max\n",
            "memory.high": "max\n",
            "memory.events": V2_MEMORY_EVENTS.format(high=0, max=0, oom=0, oom_kill=0),
        },
    )

    parsed = host_v2.scrape("container")

    assert not names(parsed) & set(LIMITS[:3])
    labels = group_labels(parsed, container_id=CONTAINER)
    assert value(parsed, LIMITS[3], **labels) == 0


@pytest.mark.parametrize(
    ("quota", "limit", "cores", "memory"),
    [
        ("200000\n", f"{GIB}\n", 2.0, GIB),
        ("-1\n", f"{V1_NO_MEMORY_LIMIT}\n", None, None),
    ],
)
def test_v1_container_limits(host_v1, quota, limit, cores, memory):
    host_v1.tree.add(11, "python", cgroup=V1_DOCKER)
    path = f"/docker/{CONTAINER}"
    files = {"cpu.cfs_quota_us": quota, "cpu.cfs_period_us": "100000\n"}
    host_v1.cgroups.write(path, files, controller="cpu")
    files = {
        "memory.limit_in_bytes": limit,
        "memory.oom_control": V1_OOM_CONTROL.format(oom_kill=3),
    }
    host_v1.cgroups.write(path, files, controller="memory")

    parsed = host_v1.scrape("container")

    labels = group_labels(parsed, container_id=CONTAINER)
    assert value(parsed, LIMITS[0], **labels) == cores
    assert value(parsed, LIMITS[1], **labels) == memory
    # v1 has no memory.high; its soft limit means something else.
    assert LIMITS[2] not in names(parsed)
    assert value(parsed, LIMITS[3], **labels) == 3


def test_unreadable_limits_are_absent(host_v2):
    # The cgroup exists, but without the cpu and memory controllers' files,
    # as when they are not enabled for it; the second one does not exist.
    host_v2.tree.add(11, "python", cgroup=v2(DOCKER_SCOPE))
    host_v2.cgroups.write(DOCKER_SCOPE, {"cgroup.procs": "11\n"})
    other = "b" * 64
    host_v2.tree.add(21, "nginx", cgroup=v2(f"/system.slice/docker-{other}.scope"))

    parsed = host_v2.scrape("container")

    group_labels(parsed, container_id=CONTAINER)
    group_labels(parsed, container_id=other)
    assert not names(parsed) & set(LIMITS)


def limited(host, path, pids, cores="100000 100000\n"):
    host.cgroups.write(path, {"cpu.max": cores, "memory.max": f"{GIB}\n"})
    host.cgroups.procs(path, pids)


def test_command_group_spanning_two_cgroups_has_no_limits(host_v2):
    host_v2.tree.add(11, "python", uid=1000, cgroup=v2("/system.slice/a.service"))
    host_v2.tree.add(12, "python", uid=1000, cgroup=v2("/system.slice/b.service"))
    host_v2.tree.add(21, "trainer", uid=1001, cgroup=v2("/system.slice/c.service"))
    limited(host_v2, "/system.slice/a.service", [11])
    limited(host_v2, "/system.slice/b.service", [12])
    limited(host_v2, "/system.slice/c.service", [21], cores="250000 100000\n")

    parsed = host_v2.scrape()

    python = group_labels(parsed, command="python")
    trainer = group_labels(parsed, command="trainer")
    assert value(parsed, LIMITS[0], **python) is None
    assert value(parsed, LIMITS[1], **python) is None
    assert value(parsed, LIMITS[0], **trainer) == pytest.approx(2.5)
    assert value(parsed, LIMITS[1], **trainer) == GIB


def test_command_sharing_its_cgroup_with_another_has_no_limits(host_v2):
    # Both would otherwise claim the whole scope's limit, and their sum twice.
    scope = "/user.slice/user-1000.slice/session-3.scope"
    host_v2.tree.add(11, "python", uid=1000, cgroup=v2(scope))
    host_v2.tree.add(12, "bash", uid=1000, cgroup=v2(scope))
    limited(host_v2, scope, [11, 12])

    parsed = host_v2.scrape()

    assert not names(parsed) & set(LIMITS)
    # The same scope holding only python's processes is python's own.
    host_v2.tree.remove(12)
    host_v2.cgroups.procs(scope, [11])
    parsed = host_v2.scrape()
    assert value(parsed, LIMITS[1], **group_labels(parsed, command="python")) == GIB


def test_container_owns_the_cgroups_below_its_own(host_v2):
    # A container running its own init splits itself into sub-cgroups; the
    # limit is the container's, one level up.
    host_v2.tree.add(11, "systemd", cgroup=v2(f"{DOCKER_SCOPE}/init.scope"))
    host_v2.tree.add(12, "nginx", cgroup=v2(f"{DOCKER_SCOPE}/system.slice/x.service"))
    limited(host_v2, DOCKER_SCOPE, [])
    limited(host_v2, f"{DOCKER_SCOPE}/init.scope", [11], cores="10000 100000\n")

    parsed = host_v2.scrape("container")

    labels = group_labels(parsed, container_id=CONTAINER)
    assert value(parsed, LIMITS[0], **labels) == pytest.approx(1.0)


def test_crio_monitor_does_not_hide_its_container_limits(host_v2):
    pod = (
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        "7e8f9a0b_1c2d_4e3f_a5b6_c7d8e9f0a1b2.slice"
    )
    host_v2.tree.add(
        11, "conmon", start=5.0, cgroup=v2(f"{pod}/crio-conmon-{CONTAINER}.scope")
    )
    host_v2.tree.add(
        12, "python", start=6.0, cgroup=v2(f"{pod}/crio-{CONTAINER}.scope")
    )
    limited(host_v2, f"{pod}/crio-{CONTAINER}.scope", [12], cores="50000 100000\n")

    parsed = host_v2.scrape("container")

    labels = group_labels(parsed, container_id=CONTAINER)
    assert value(parsed, LIMITS[0], **labels) == pytest.approx(0.5)


def test_unit_group_reads_the_unit_not_the_scope_inside_it(host_v2):
    unit = "/user.slice/user-1000.slice/user@1000.service"
    host_v2.tree.add(11, "systemd", uid=1000, cgroup=v2(f"{unit}/init.scope"))
    limited(host_v2, unit, [], cores="300000 100000\n")
    limited(host_v2, f"{unit}/init.scope", [11])

    parsed = host_v2.scrape("unit")

    labels = group_labels(parsed, unit="user@1000.service")
    assert value(parsed, LIMITS[0], **labels) == pytest.approx(3.0)


def test_v1_unit_without_a_cpu_cgroup_of_its_own(host_v1):
    # A hybrid host's service: memory has a cgroup per unit, cpu stays at "/".
    path = "/system.slice/prometheus.service"
    host_v1.tree.add(
        11,
        "prometheus",
        cgroup=f"11:memory:{path}\n4:cpu,cpuacct:/\n1:name=systemd:{path}\n0::{path}\n",
    )
    host_v1.cgroups.write(path, {"memory.limit_in_bytes": f"{GIB}\n"}, "memory")
    files = {"cpu.cfs_quota_us": "100000\n", "cpu.cfs_period_us": "100000\n"}
    host_v1.cgroups.write("/", files, controller="cpu")

    parsed = host_v1.scrape("unit")

    labels = group_labels(parsed, unit="prometheus.service")
    assert value(parsed, LIMITS[1], **labels) == GIB
    assert value(parsed, LIMITS[0], **labels) is None


def test_each_cgroup_file_is_read_once_a_cycle_and_again_the_next(host_v2):
    for pid in range(100, 200):
        host_v2.tree.add(pid, "python", cgroup=v2(DOCKER_SCOPE))
    limited(host_v2, DOCKER_SCOPE, list(range(100, 200)))
    reads: list[str] = []

    def counting(path):
        reads.append(path)
        return read_text(path)

    sampler = host_v2.sampler(
        "container", CgroupLimitReader(host_v2.procfs, read=counting)
    )
    sampler.sample()
    host_v2.cgroups.write(DOCKER_SCOPE, {"cpu.max": "200000 100000\n"})
    group = sampler.sample().groups[0]

    assert sum(path.endswith("/cpu.max") for path in reads) == 2
    # The second cycle saw the new limit: nothing is kept across cycles.
    assert group.limits.cpu_cores == pytest.approx(2.0)


def test_page_with_limits_passes_promtool(host_v2):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; `make test` installs it")
    host_v2.tree.add(11, "python", cgroup=v2(DOCKER_SCOPE))
    host_v2.cgroups.write(
        DOCKER_SCOPE,
        {
            "cpu.max": "150000 100000\n",
            "memory.max": "2147483648\n",
            "memory.high": "1610612736\n",
            "memory.events": V2_MEMORY_EVENTS.format(high=0, max=0, oom=0, oom_kill=2),
        },
    )
    families = process_families(host_v2.sampler("container").sample())
    text = generate_latest(registry_of(families))

    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert (result.returncode, (result.stdout + result.stderr).decode()) == (0, "")
    assert set(LIMITS) <= names(series(families))


# This host's table as the kernel wrote it: a hybrid layout, cpu and memory on
# v1 hierarchies and an empty v2 tree at .../unified.
HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_MOUNTINFO = (
    "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 "
    "- cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
)


def test_mountinfo_of_a_hybrid_host_puts_cpu_and_memory_on_v1():
    mounts = parse_mountinfo(HYBRID_MOUNTINFO)

    assert mounts == {
        "cpu": Mount(1, "/sys/fs/cgroup/cpu", "/"),
        "memory": Mount(1, "/sys/fs/cgroup/memory", "/"),
    }


def test_mountinfo_of_a_v2_host_and_escaped_mount_points():
    assert parse_mountinfo(V2_MOUNTINFO)["memory"] == Mount(2, "/sys/fs/cgroup", "/")
    escaped = V2_MOUNTINFO.replace("/sys/fs/cgroup", "/host\\040root/cgroup")
    assert parse_mountinfo(escaped)["cpu"].directory == "/host root/cgroup"


def test_a_whole_tree_wins_over_a_bind_mount_of_one_cgroup():
    container = f"/system.slice/docker-{CONTAINER}.scope"
    bind = V2_MOUNTINFO.replace(" / /sys/fs/cgroup ", f" {container} /sys/fs/cgroup ")
    whole = V2_MOUNTINFO.replace("/sys/fs/cgroup", "/host/cgroup")

    assert parse_mountinfo(bind + whole)["cpu"].directory == "/host/cgroup"
    mount = parse_mountinfo(bind)["cpu"]
    assert directory_of(f"{container}/init.scope", mount) == "/sys/fs/cgroup/init.scope"
    assert directory_of(container, mount) == "/sys/fs/cgroup"
    assert directory_of("/system.slice/other.service", mount) is None


def test_paths_outside_our_cgroup_namespace_cannot_be_reached():
    mount = parse_mountinfo(V2_MOUNTINFO)["cpu"]
    text = "0::/../../kubepods.slice/x.scope\n"

    path = controller_paths(text, {"cpu": mount, "memory": mount})[0]

    assert path is not None and directory_of(path, mount) is None


def test_own_cgroup_limits_match_the_kernel_files():
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    if not mounts:
        pytest.skip("this host mounts no cgroup hierarchy with cpu or memory")
    text = Path("/proc/self/cgroup").read_text()
    cpu_path, memory_path = controller_paths(text, mounts)
    cpu = None if cpu_path is None else directory_of(cpu_path, mounts["cpu"])
    memory = (
        None if memory_path is None else directory_of(memory_path, mounts["memory"])
    )
    expected = kernel_limits(text)

    limits = CgroupLimitReader(ProcFs()).limits_at(cpu, memory)

    assert (cpu, memory) == (expected.pop("cpu_dir"), expected.pop("memory_dir"))
    assert limits == CgroupLimits(**expected)


def kernel_limits(cgroup_text: str) -> dict:
    """This process's cgroup directories and limits, found without the exporter's
    code: mount points from mountinfo as proc(5) describes it, values as the
    kernel's cgroup-v1 and cgroup-v2 documents describe them."""
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, tail = line.split(" - ")[0].split(), line.split(" - ")[1].split()
        if tail[0] == "cgroup2":
            found.setdefault("v2", fields)
        elif tail[0] == "cgroup":
            for controller in ("cpu", "memory"):
                if controller in tail[2].split(","):
                    found[controller] = fields
    hierarchies = {}
    for line in cgroup_text.splitlines():
        number, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if number != "0" else ["v2"]:
            hierarchies[controller] = path

    def directory(controller):
        fields = found.get(controller) or found.get("v2")
        path = hierarchies.get(controller if controller in found else "v2")
        if fields is None or path is None:
            return None, None
        if fields[3] != "/":
            pytest.skip(f"cgroup mounted from {fields[3]!r}, not its root")
        version = 1 if controller in found else 2
        return version, (fields[4] + path).rstrip("/") or "/"

    def read(path):
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None

    cpu_version, cpu_dir = directory("cpu")
    memory_version, memory_dir = directory("memory")
    cores = limit = high = kills = None
    if cpu_version == 2:
        quota, _, period = (read(f"{cpu_dir}/cpu.max") or "max").partition(" ")
        cores = None if quota == "max" else int(quota) / int(period)
    elif cpu_version == 1:
        quota = int(read(f"{cpu_dir}/cpu.cfs_quota_us") or "-1")
        period = int(read(f"{cpu_dir}/cpu.cfs_period_us") or "0")
        cores = quota / period if quota > 0 and period > 0 else None
    if memory_version == 2:
        raw = read(f"{memory_dir}/memory.max")
        limit = None if raw in (None, "max") else int(raw)
        raw = read(f"{memory_dir}/memory.high")
        high = None if raw in (None, "max") else int(raw)
        events = read(f"{memory_dir}/memory.events") or ""
    elif memory_version == 1:
        raw = read(f"{memory_dir}/memory.limit_in_bytes")
        limit = None if raw is None or int(raw) >= 2**62 else int(raw)
        events = read(f"{memory_dir}/memory.oom_control") or ""
    else:
        events = ""
    for line in events.splitlines():
        if line.startswith("oom_kill "):
            kills = int(line.split()[1])
    return {
        "cpu_dir": cpu_dir,
        "memory_dir": memory_dir,
        "cpu_cores": cores,
        "memory_bytes": limit,
        "memory_high_bytes": high,
        "oom_kills": kills,
    }
