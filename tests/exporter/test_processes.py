"""ProcessSampler: grouping, CPU shares, top N plus the rest, vanishing processes,
against a fake psutil and against this host's real /proc."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections import namedtuple
from types import SimpleNamespace

import psutil
import pytest

from exporter.metrics import process_families
from exporter.processes import OTHER, ProcessSampler
from tests.exporter.exposition import names, series, value

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait guest guest_nice")
ProcTimes = namedtuple("ProcTimes", "user system children_user children_system")
Memory = namedtuple("Memory", "total available")
MemInfo = namedtuple("MemInfo", "rss vms")

GIB = 1 << 30
BOOT = 1_700_000_000.0


class FakeProcess:
    """A psutil.Process look-alike; `fail` is an exception raised on cpu_times()."""

    def __init__(self, pid, user, name, cpu, rss, created=BOOT, fail=None):
        self.pid = pid
        self.user, self.comm = user, name
        self.cpu, self.rss, self.created = cpu, rss, created
        self.fail = fail

    def oneshot(self):
        return contextlib.nullcontext()

    def create_time(self):
        return self.created

    def username(self):
        return self.user

    def name(self):
        return self.comm

    def cpu_times(self):
        if self.fail is not None:
            raise self.fail
        # Half user, half system, so that a sampler reading only one is caught.
        return ProcTimes(self.cpu / 2, self.cpu / 2, 99.0, 99.0)

    def memory_info(self):
        return MemInfo(self.rss, self.rss * 4)


class FakeHost:
    """A psutil-like module over a list of FakeProcess and a settable clock."""

    def __init__(self, processes, cpu_count=4):
        self.processes = processes
        self.now = 1000.0
        self.host_times = CpuTimes(10.0, 0.0, 5.0, 80.0, 5.0, 0.0, 0.0)
        self.ps = SimpleNamespace(
            process_iter=lambda: iter(self.processes),
            cpu_times=lambda: self.host_times,
            virtual_memory=lambda: Memory(64 * GIB, 48 * GIB),
            cpu_count=lambda: cpu_count,
        )

    def sampler(self, top_groups=10):
        return ProcessSampler(
            top_groups,
            ps=self.ps,
            clock=lambda: self.now,
            wall=lambda: BOOT + self.now,
        )

    def advance(self, seconds, **cpu_by_pid):
        self.now += seconds
        for proc in self.processes:
            proc.cpu += cpu_by_pid.get(f"p{proc.pid}", 0.0)


def by_group(sample):
    return {(g.user, g.command): g for g in sample.groups}


def four_groups():
    return [
        FakeProcess(101, "alice", "python", cpu=100.0, rss=4 * GIB),
        FakeProcess(102, "alice", "python", cpu=50.0, rss=4 * GIB),
        FakeProcess(201, "bob", "trainer", cpu=10.0, rss=1 * GIB),
        FakeProcess(301, "carol", "bash", cpu=1.0, rss=8 << 20),
        FakeProcess(401, "root", "sshd", cpu=1.0, rss=6 << 20),
    ]


def test_first_sample_has_memory_and_counts_but_no_cpu_share():
    host = FakeHost(four_groups())

    sample = host.sampler().sample()

    alice = by_group(sample)[("alice", "python")]
    assert alice.processes == 2
    assert alice.resident_bytes == 8 * GIB
    assert alice.cpu_ratio is None
    assert sample.host.cpu_ratio is None
    parsed = series(process_families(sample))
    assert "aiops_process_group_cpu_usage_ratio" not in names(parsed)
    assert "aiops_host_cpu_usage_ratio" not in names(parsed)
    assert value(parsed, "aiops_host_memory_total_bytes") == 64 * GIB


def test_cpu_share_is_of_the_whole_host():
    host = FakeHost(four_groups(), cpu_count=4)
    sampler = host.sampler()
    sampler.sample()

    # 10 s on 4 CPUs is 40 CPU seconds of capacity.
    host.advance(10.0, p101=2.0, p102=2.0, p201=1.0, p301=0.5, p401=0.1)
    groups = by_group(sampler.sample())

    assert groups[("alice", "python")].cpu_ratio == pytest.approx(4.0 / 40)
    assert groups[("bob", "trainer")].cpu_ratio == pytest.approx(1.0 / 40)
    assert groups[("carol", "bash")].cpu_ratio == pytest.approx(0.5 / 40)


def test_top_groups_keep_the_busiest_and_sum_the_rest():
    host = FakeHost(four_groups(), cpu_count=4)
    sampler = host.sampler(top_groups=2)
    sampler.sample()
    host.advance(10.0, p101=2.0, p102=2.0, p201=1.0, p301=0.5, p401=0.1)

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
    labels = {"command": "(other)", "user": "(other)"}
    assert value(parsed, "aiops_process_group_processes", **labels) == 2
    assert value(
        parsed, "aiops_process_group_cpu_usage_ratio", command="python", user="alice"
    ) == pytest.approx(0.1)


def test_no_rest_group_when_all_fit():
    host = FakeHost(four_groups())

    sample = host.sampler(top_groups=4).sample()

    assert len(sample.groups) == 4
    assert (OTHER, OTHER) not in by_group(sample)


@pytest.mark.parametrize(
    "error",
    [
        psutil.NoSuchProcess(201),
        psutil.ZombieProcess(201),
        psutil.AccessDenied(201),
    ],
)
def test_process_vanishing_mid_collection_is_skipped_and_counted(error):
    processes = four_groups()
    processes[2].fail = error
    host = FakeHost(processes)

    sample = host.sampler().sample()

    assert sample.skipped == 1
    assert ("bob", "trainer") not in by_group(sample)
    assert by_group(sample)[("alice", "python")].processes == 2


def test_process_started_inside_the_window_counts_all_its_cpu():
    host = FakeHost(four_groups(), cpu_count=4)
    sampler = host.sampler()
    sampler.sample()

    host.advance(10.0)
    host.processes.append(
        FakeProcess(501, "dave", "make", cpu=3.0, rss=GIB, created=BOOT + 1005.0)
    )
    groups = by_group(sampler.sample())

    assert groups[("dave", "make")].cpu_ratio == pytest.approx(3.0 / 40)


def test_reused_pid_is_a_new_process():
    host = FakeHost([FakeProcess(101, "alice", "python", cpu=500.0, rss=GIB)])
    sampler = host.sampler()
    sampler.sample()

    # Same pid, started inside the window; keyed by pid alone it would read
    # 2 - 500 CPU seconds and show nothing.
    host.advance(10.0)
    host.processes = [
        FakeProcess(101, "alice", "python", cpu=2.0, rss=GIB, created=BOOT + 1004.0)
    ]
    groups = by_group(sampler.sample())

    assert groups[("alice", "python")].cpu_ratio == pytest.approx(2.0 / 40)


def test_host_cpu_leaves_guest_time_out_of_the_total():
    host = FakeHost([])
    sampler = host.sampler()
    host.host_times = CpuTimes(10.0, 0.0, 5.0, 80.0, 5.0, 2.0, 0.0)
    sampler.sample()

    host.advance(1.0)
    host.host_times = CpuTimes(20.0, 0.0, 10.0, 160.0, 10.0, 4.0, 0.0)
    sample = sampler.sample()

    # Busy 15 of 100 new seconds; guest time is already inside user.
    assert sample.host.cpu_ratio == pytest.approx(0.15)
    assert sample.host.cpu_count == 4
    assert sample.host.memory_available_bytes == 48 * GIB


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
    sampler = ProcessSampler(top_groups=100_000)

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

    group = by_group(sample)[(psutil.Process().username(), "aiops-testburn")]
    assert group.processes == 1
    assert group.resident_bytes > 1 << 20
    assert 0 < group.cpu_ratio <= 1
    # The child burned 0.3 CPU seconds inside the window; /proc counts in ticks.
    assert group.cpu_ratio * elapsed * sample.host.cpu_count >= 0.25

    assert sample.host.cpu_count == os.cpu_count()
    assert 0 < sample.host.cpu_ratio <= 1
    assert 0 < sample.host.memory_available_bytes < sample.host.memory_total_bytes
