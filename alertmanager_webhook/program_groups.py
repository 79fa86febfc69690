"""A program's session and process group: how it is ranked, when it has ended.

A command runs in a session of its own (spawn.py), which is also a process
group of its own, and, where the kernel makes them, a scheduling group of
its own. Here that scheduling group is ranked below the receiver, and the
process group is watched until nothing of it runs, by the worker that
started the program and, after a crash, by the next one (survivors.py).
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from collections.abc import Callable, Iterator

# The niceness of a program's scheduling group, where sessions have one, and
# how often one the kernel would not change yet is tried again.
AUTOGROUP_NICE = 19
AUTOGROUP_RETRY_SECONDS = 0.1
# How often a program's group is looked at once the program has ended: at
# first, and at the least, as the pause doubles.
GROUP_POLL_SECONDS = 0.05
GROUP_POLL_MAX_SECONDS = 1.0


def rank_below_the_receiver(pid: int) -> None:
    """Give the program's session the scheduler's lowest weight.

    Where the kernel makes a scheduling group per session (autogroup), a
    session of its own would take as much CPU as the whole receiver whatever
    the niceness and SCHED_IDLE its program inherits, which rank it only
    within that group (under bench-receiver's load, with two CPU-bound
    commands running, p99 was 7.3-8.7 ms with their sessions' groups at
    niceness 0, 4.0-4.6 ms at +19, in two runs each). Best effort: without
    autogroups there is no such file, and the inherited policy ranks it.
    """
    try:
        _write_autogroup_nice(pid)
    except OSError as exc:
        if exc.errno == errno.EAGAIN:
            # Without CAP_SYS_ADMIN the kernel takes one such change per
            # 100 ms, system-wide: the others are made as it allows.
            RANKER.add(pid)


def _write_autogroup_nice(pid: int) -> None:
    with open(f"/proc/{pid}/autogroup", "w") as group:
        group.write(str(AUTOGROUP_NICE))


class Ranker:
    """Ranks programs below the receiver once the kernel allows it, while they run."""

    def __init__(self, write: Callable[[int], None] = _write_autogroup_nice) -> None:
        self._write = write
        self._lock = threading.Lock()
        # Each program's pidfd: readable once it has ended, so that a pid
        # reused by another process is never ranked.
        self._waiting: dict[int, int] = {}
        self._thread: threading.Thread | None = None

    def add(self, pid: int) -> None:
        try:
            ended = os.pidfd_open(pid)
        except OSError:
            return  # ended already
        with self._lock:
            self._waiting[pid] = ended
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._rank, name="autogroup-ranks", daemon=True
                )
                self._thread.start()

    def _rank(self) -> None:
        while True:
            time.sleep(AUTOGROUP_RETRY_SECONDS)
            with self._lock:
                for pid, ended in list(self._waiting.items()):
                    if not self._still_waits(pid, ended):
                        del self._waiting[pid]
                        os.close(ended)
                if not self._waiting:
                    self._thread = None
                    return

    def _still_waits(self, pid: int, ended: int) -> bool:
        if select.select([ended], [], [], 0)[0]:
            return False
        try:
            self._write(pid)
        except OSError as exc:
            return exc.errno == errno.EAGAIN
        return False


RANKER = Ranker()


def group_ends_by(pgid: int, deadline: float) -> bool:
    """Wait until process group `pgid` is empty; False if it is not by `deadline`.

    What a program started in the background, its output sent elsewhere,
    outlives it unseen by its pipes and its pidfd. Its group's id is not
    reused while any of them runs.
    """
    # Looked at less often the longer it runs: a look may read every
    # process's stat (_member_states), for the group's whole timeout.
    pause = GROUP_POLL_SECONDS
    while group_runs(pgid):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(2 * pause, GROUP_POLL_MAX_SECONDS)
    return True


def group_runs(pgid: int) -> bool:
    """Whether a process of group `pgid` runs; zombies do not count."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # one of them runs as another user now
    # Zombies count for the kernel: an orphan's stays in the group until its
    # new parent reaps it, which some containers' first process never does.
    return any(state not in "ZX" for state in _member_states(pgid))


def _member_states(pgid: int) -> Iterator[str]:
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[2]) == pgid:
            yield fields[0].decode()
