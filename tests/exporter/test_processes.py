"""ProcessSampler: groups by command, container or unit, CPU shares and counters,
top N plus the rest, vanishing processes, against /proc trees in the kernel's
formats and against this host's real /proc."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest

from exporter.host_metrics import process_families
from exporter.identity import IdentityCache, user_name
from exporter.processes import OTHER, ProcessSampler
from exporter.procfs import ProcFs
from tests.exporter.exposition import names, series, value
from tests.exporter.proc_tree import ProcTree

GIB = 1 << 30
USERS = {0: "root", 1000: "alice", 1001: "bob", 1002: "carol"}
DOCKER = "0::/system.slice/docker-{}.scope\n"
POD = (
    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
    "d4c3b2a1_0f9e_4d8c_b7a6_958473625140.slice/cri-containerd-{}.scope\n"
)
SERVICE = "0::/system.slice/{}.service\n"
CONTAINER_A = "a" * 64
CONTAINER_B = "b" * 64


class Host:
    """A /proc tree, a settable boot clock and a sampler over both."""

    def __init__(self, tmp_path, cpus=4):
        self.tree = ProcTree(tmp_path / "proc", cpus=cpus)
        self.now = 1000.0

    def sampler(self, top_groups=10, grouping="command", cmdline=False):
        procfs = self.tree.procfs()
        identities = IdentityCache(procfs, user_names=USERS.get, cmdline=cmdline)
        return ProcessSampler(
            top_groups, procfs, identities, grouping=grouping, clock=lambda: self.now
        )

    def four_groups(self):
        add = self.tree.add
        add(101, "python", uid=1000, cpu=100.0, rss=4 * GIB, threads=8, fds=20)
        add(102, "python", uid=1000, cpu=50.0, rss=4 * GIB, threads=4, fds=10)
        add(201, "trainer", uid=1001, cpu=10.0, rss=1 * GIB, read_bytes=1000)
        add(301, "bash", uid=1002, cpu=1.0, rss=8 << 20)
        add(401, "sshd", uid=0, cpu=1.0, rss=6 << 20)


def by_group(sample):
    return {(g.user, g.command): g for g in sample.groups}


@pytest.fixture
def host(tmp_path):
    return Host(tmp_path)


def test_first_sample_has_memory_and_counts_but_no_cpu_share(host):
    host.four_groups()

    sample = host.sampler().sample()

    alice = by_group(sample)[("alice", "python")]
    assert (alice.processes, alice.threads, alice.open_files) == (2, 12, 30)
    assert alice.resident_bytes == 8 * GIB
    assert alice.cpu_ratio is None
    assert alice.cpu_seconds_total == 0
    assert sample.host.cpu_ratio is None
    parsed = series(process_families(sample))
    assert "aiops_process_group_cpu_usage_ratio" not in names(parsed)
    assert "aiops_host_cpu_usage_ratio" not in names(parsed)
    assert value(parsed, "aiops_host_memory_total_bytes") == 64 * GIB
    assert value(parsed, "aiops_host_oom_kills_total") == 2


def test_cpu_share_is_of_the_whole_host_and_counters_add_up(host):
    host.four_groups()
    sampler = host.sampler()
    sampler.sample()

    # 10 s on 4 CPUs is 40 CPU seconds of capacity.
    host.now += 10.0
    host.tree.add(101, "python", uid=1000, cpu=102.0, rss=4 * GIB)
    host.tree.add(102, "python", uid=1000, cpu=52.0, rss=4 * GIB)
    host.tree.add(201, "trainer", uid=1001, cpu=11.0, read_bytes=5096, write_bytes=7)
    groups = by_group(sampler.sample())

    assert groups[("alice", "python")].cpu_ratio == pytest.approx(4.0 / 40)
    assert groups[("alice", "python")].cpu_seconds_total == pytest.approx(4.0)
    trainer = groups[("bob", "trainer")]
    assert trainer.cpu_ratio == pytest.approx(1.0 / 40)
    assert (trainer.read_bytes_total, trainer.written_bytes_total) == (4096, 7)

    host.now += 10.0
    host.tree.add(201, "trainer", uid=1001, cpu=13.0, read_bytes=5096, write_bytes=7)
    assert by_group(sampler.sample())[("bob", "trainer")].cpu_seconds_total == (
        pytest.approx(3.0)
    )


def test_top_groups_keep_the_busiest_and_sum_the_rest(host):
    host.four_groups()
    sampler = host.sampler(top_groups=2)
    sampler.sample()
    host.now += 10.0
    host.tree.add(101, "python", uid=1000, cpu=102.0, rss=4 * GIB)
    host.tree.add(201, "trainer", uid=1001, cpu=11.0, rss=GIB)
    host.tree.add(301, "bash", uid=1002, cpu=1.5, rss=8 << 20)
    host.tree.add(401, "sshd", uid=0, cpu=1.1, rss=6 << 20)

    sample = sampler.sample()

    assert [(g.user, g.command) for g in sample.groups] == [
        ("alice", "python"),
        ("bob", "trainer"),
        (OTHER, OTHER),
    ]
    other = sample.groups[-1]
    assert other.cpu_ratio == pytest.approx(0.6 / 40)
    assert other.resident_bytes == (8 << 20) + (6 << 20)
    assert other.processes == 2

    parsed = series(process_families(sample))
    rest = {"command": OTHER, "user": OTHER, "container_id": "", "pod_uid": ""}
    assert value(parsed, "aiops_process_group_processes", **rest, unit="") == 2
    assert value(
        parsed,
        "aiops_process_group_cpu_usage_ratio",
        command="python",
        user="alice",
        container_id="",
        pod_uid="",
        unit="",
    ) == pytest.approx(0.05)


def test_the_rest_counter_never_goes_back_when_groups_move(host):
    host.four_groups()
    sampler = host.sampler(top_groups=1)
    sampler.sample()

    bash = sshd = 1.0
    totals = []
    for step in range(4):
        # bash and sshd take turns being the busiest; the other joins the rest.
        bash += 1 + step % 2
        sshd += 2 - step % 2
        host.now += 10.0
        host.tree.add(301, "bash", uid=1002, cpu=bash)
        host.tree.add(401, "sshd", uid=0, cpu=sshd)
        groups = by_group(sampler.sample())
        totals.append(groups[(OTHER, OTHER)].cpu_seconds_total)

    assert totals == pytest.approx([1.0, 2.0, 3.0, 4.0])


def test_no_rest_group_when_all_fit(host):
    host.four_groups()

    sample = host.sampler(top_groups=4).sample()

    assert len(sample.groups) == 4
    assert (OTHER, OTHER) not in by_group(sample)


def test_process_vanishing_mid_collection_is_skipped_and_counted(host):
    host.four_groups()
    host.tree.vanish_stat(201)

    sample = host.sampler().sample()

    assert sample.skipped == 1
    assert ("bob", "trainer") not in by_group(sample)
    assert by_group(sample)[("alice", "python")].processes == 2
    assert value(series(process_families(sample)), "aiops_process_skipped") == 1


def test_unreadable_io_counts_as_no_bytes(host):
    host.tree.add(501, "daemon", uid=0, read_bytes=None)

    sample = host.sampler().sample()

    group = by_group(sample)[("root", "daemon")]
    assert (group.read_bytes_total, group.processes, sample.skipped) == (0, 1, 0)


def test_process_started_inside_the_window_counts_all_its_cpu(host):
    host.four_groups()
    sampler = host.sampler()
    sampler.sample()

    host.now += 10.0
    host.tree.add(501, "make", uid=1000, cpu=3.0, start=1005.0)
    groups = by_group(sampler.sample())

    assert groups[("alice", "make")].cpu_ratio == pytest.approx(3.0 / 40)


def test_reused_pid_is_a_new_process(host):
    host.tree.add(101, "python", uid=1000, cpu=500.0, start=10.0)
    sampler = host.sampler()
    sampler.sample()

    # Same pid, started inside the window; keyed by pid alone it would read
    # 2 - 500 CPU seconds and show nothing.
    host.now += 10.0
    host.tree.add(101, "python", uid=1000, cpu=2.0, start=1004.0)
    groups = by_group(sampler.sample())

    assert groups[("alice", "python")].cpu_ratio == pytest.approx(2.0 / 40)


def test_host_cpu_leaves_guest_time_out_of_the_total(host):
    sampler = host.sampler()
    host.tree.host(busy=15.0, idle=80.0, iowait=5.0, guest=2.0)
    sampler.sample()

    host.now += 1.0
    host.tree.host(busy=30.0, idle=160.0, iowait=10.0, guest=4.0)
    sample = sampler.sample()

    # Busy 15 of 100 new seconds; guest time is already inside user.
    assert sample.host.cpu_ratio == pytest.approx(0.15)
    assert sample.host.cpu_count == 4


def test_grouping_by_container_keeps_command_and_user(host):
    host.tree.add(11, "python", uid=1000, start=5.0, cgroup=DOCKER.format(CONTAINER_A))
    host.tree.add(12, "worker", uid=1001, start=6.0, cgroup=DOCKER.format(CONTAINER_A))
    host.tree.add(21, "trainer", uid=1000, cgroup=POD.format(CONTAINER_B))
    host.tree.add(31, "sshd", uid=0)

    sample = host.sampler(grouping="container").sample()

    groups = {g.container_id or g.command: g for g in sample.groups}
    # A container's labels are those of its oldest process.
    assert (groups[CONTAINER_A].command, groups[CONTAINER_A].user) == (
        "python",
        "alice",
    )
    assert groups[CONTAINER_A].processes == 2
    assert groups[CONTAINER_B].pod_uid == "d4c3b2a1-0f9e-4d8c-b7a6-958473625140"
    assert groups["sshd"].container_id == ""
    parsed = series(process_families(sample))
    assert (
        value(
            parsed,
            "aiops_process_group_processes",
            command="python",
            user="alice",
            container_id=CONTAINER_A,
            pod_uid="",
            unit="",
        )
        == 2
    )


def test_grouping_by_unit(host):
    host.tree.add(11, "nginx", uid=0, start=5.0, cgroup=SERVICE.format("nginx"))
    host.tree.add(12, "nginx", uid=33, start=6.0, cgroup=SERVICE.format("nginx"))
    host.tree.add(21, "bash", uid=1000)

    sample = host.sampler(grouping="unit").sample()

    groups = {g.unit or g.command: g for g in sample.groups}
    assert groups["nginx.service"].processes == 2
    assert groups["nginx.service"].user == "root"
    assert groups["bash"].unit == ""


def test_command_lines_only_when_asked_and_redacted(host):
    host.tree.add(11, "psql", uid=1000, cmdline=("psql", "--password", "hunter2"))

    without = host.sampler().sample()
    with_cmdline = host.sampler(cmdline=True).sample()

    assert "aiops_process_group_info" not in names(series(process_families(without)))
    parsed = series(process_families(with_cmdline))
    info = [dict(labels) for name, labels in parsed if name.endswith("_info")]
    assert [i["cmdline"] for i in info] == ["psql --password <redacted>"]


def test_identity_cache_forgets_exited_processes(host):
    host.four_groups()
    procfs = host.tree.procfs()
    identities = IdentityCache(procfs, user_names=USERS.get)
    sampler = ProcessSampler(10, procfs, identities, clock=lambda: host.now)
    sampler.sample()
    assert len(identities) == 5

    host.tree.remove(101)
    host.tree.remove(102)
    sampler.sample()

    assert len(identities) == 3


BURNER = """
import ctypes, signal, sys, time
ctypes.CDLL(None).prctl(15, b"aiops-testburn", 0, 0, 0)
signal.alarm(60)
print("ready", flush=True)
for line in sys.stdin:
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    print("done", flush=True)
"""


def read_line(stream, timeout=20.0):
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "child did not answer in time"
    return stream.readline().strip()


def test_real_proc_groups_a_cpu_burning_child():
    procfs = ProcFs()
    sampler = ProcessSampler(100_000, procfs, IdentityCache(procfs))

    with subprocess.Popen(
        [sys.executable, "-c", BURNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert read_line(child.stdout) == "ready"
            started = time.monotonic()
            sampler.sample()

            child.stdin.write("burn\n")
            child.stdin.flush()
            assert read_line(child.stdout) == "done"
            sample = sampler.sample()
            elapsed = time.monotonic() - started
        finally:
            child.stdin.close()
            child.wait(timeout=20)

    group = by_group(sample)[(user_name(os.getuid()), "aiops-testburn")]
    assert group.processes == 1
    assert group.resident_bytes > 1 << 20
    assert 0 < group.cpu_ratio <= 1
    # The child burned 0.3 CPU seconds inside the window; /proc counts in ticks.
    assert group.cpu_ratio * elapsed * sample.host.cpu_count >= 0.25
    assert group.cpu_seconds_total >= 0.25

    assert sample.host.cpu_count == os.cpu_count()
    assert 0 < sample.host.cpu_ratio <= 1
    assert 0 < sample.host.memory_available_bytes < sample.host.memory_total_bytes
