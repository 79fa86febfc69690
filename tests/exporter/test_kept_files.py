"""KeptFiles on this host's /proc: files stay open between reads, read fresh,
and let go of processes that exit, even when their pid comes back."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from exporter.kept_files import KeptFiles
from exporter.procfs import ProcFs


def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


@pytest.fixture
def sleeper():
    children = []

    def start():
        child = subprocess.Popen(["sleep", "60"])
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
        child.wait()


def test_reads_stay_fresh_through_one_open_file():
    kept = KeptFiles("/proc", limit=10)
    me = os.getpid()
    before = ProcFs(keep_open=0).stat(me).cpu_seconds

    first = kept.read(me, "stat")
    burn(0.3)
    second = kept.read(me, "stat")

    assert len(kept) == 1
    assert first != second
    fields = second.rpartition(b")")[2].split()
    assert (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") > before
    kept.close()
    assert len(kept) == 0


def test_an_exited_process_reads_as_none_and_is_let_go(sleeper):
    child = sleeper()
    kept = KeptFiles("/proc", limit=10)
    assert kept.read(child.pid, "stat")
    assert kept.size(child.pid, "fd") >= 0

    child.kill()
    child.wait()

    assert kept.read(child.pid, "stat") is None
    assert kept.size(child.pid, "fd") is None
    assert len(kept) == 0


def test_retain_closes_the_files_of_processes_gone_from_the_listing(sleeper):
    first, second = sleeper(), sleeper()
    kept = KeptFiles("/proc", limit=10)
    kept.read(first.pid, "stat")
    kept.read(second.pid, "stat")

    kept.retain({second.pid})

    assert len(kept) == 1
    kept.close()


def test_past_the_limit_files_are_read_and_closed(sleeper):
    first, second = sleeper(), sleeper()
    kept = KeptFiles("/proc", limit=1)

    assert kept.read(first.pid, "stat")
    assert kept.read(second.pid, "stat")

    assert len(kept) == 1
    kept.close()


def test_procfs_reads_alike_with_and_without_kept_files():
    plain, keeping = ProcFs(), ProcFs(keep_open=100)
    me = os.getpid()

    for _ in range(2):
        assert keeping.stat(me).start_ticks == plain.stat(me).start_ticks
        assert keeping.io(me) is not None
        assert keeping.open_files(me) == plain.open_files(me)
    keeping.close()
