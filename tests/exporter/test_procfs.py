"""ProcFs over a /proc tree in the kernel's formats, and over this host's /proc."""

from __future__ import annotations

import os

import pytest

from exporter.procfs import ProcFs
from tests.exporter.proc_tree import PAGE, ProcTree


@pytest.fixture
def tree(tmp_path):
    return ProcTree(tmp_path / "proc", cpus=8)


def test_stat_reads_a_comm_with_spaces_and_parentheses(tree):
    tree.add(42, "tmux: server (1)", cpu=12.5, start=300.0, rss=10 * PAGE, threads=7)

    stat = tree.procfs().stat(42)

    assert stat.comm == "tmux: server (1)"
    assert stat.cpu_seconds == pytest.approx(12.5)
    assert stat.threads == 7
    assert stat.start_seconds == pytest.approx(300.0)
    assert stat.resident_bytes == 10 * PAGE


def test_per_process_files(tree):
    tree.add(
        7, "python3", uid=1001, read_bytes=4096, write_bytes=8192, fds=5,
        cmdline=("python3", "-m", "http.server"),
    )  # fmt: skip
    procfs = tree.procfs()

    assert procfs.pids() == [7]
    assert procfs.uid(7) == 1001
    assert procfs.io(7) == (4096, 8192)
    assert procfs.open_files(7) == 5
    assert procfs.cmdline(7) == ["python3", "-m", "http.server"]
    assert procfs.cgroup(7).startswith("0::/user.slice/")


def test_exited_or_unreadable_process_reads_as_none(tree):
    tree.add(7, "short-lived", read_bytes=None)
    procfs = tree.procfs()
    assert procfs.io(7) is None

    tree.remove(7)

    assert procfs.stat(7) is None
    assert procfs.uid(7) is None
    assert procfs.open_files(7) is None
    assert procfs.cmdline(7) is None


def test_host_files(tree):
    tree.host(busy=30.0, idle=60.0, iowait=10.0, guest=5.0, oom_kills=3)
    procfs = tree.procfs()

    cpu = procfs.host_cpu()
    memory = procfs.host_memory()

    assert cpu.cpu_count == 8
    # Guest time is inside user already and iowait is idle.
    assert cpu.busy_seconds == pytest.approx(30.0)
    assert cpu.total_seconds == pytest.approx(100.0)
    assert memory.total_bytes == 67108864 * 1024
    assert memory.available_bytes == 50331648 * 1024
    assert procfs.oom_kills() == 3


def test_kernel_without_oom_kill_counter(tree):
    tree.host(oom_kills=None)

    assert tree.procfs().oom_kills() is None


def test_this_hosts_proc():
    procfs = ProcFs()
    me = os.getpid()

    stat = procfs.stat(me)

    assert me in procfs.pids()
    assert stat.resident_bytes > 1 << 20
    assert stat.threads >= 1
    assert procfs.uid(me) == os.getuid()
    # The listing holds one descriptor of its own while it runs.
    listed = len(os.listdir(f"/proc/{me}/fd"))
    assert procfs.open_files(me) in (listed - 1, listed)
    assert procfs.host_cpu().cpu_count == os.cpu_count()
