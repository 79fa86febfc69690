"""Host CPU and memory, and processes grouped by (user, command), from /proc.

Needs psutil (or an object with its process_iter, cpu_times, virtual_memory and
cpu_count); a process that exits while it is being read is skipped and counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

log = logging.getLogger(__name__)

OTHER = "(other)"

# ZombieProcess is a NoSuchProcess; psutil raises these for a process that exits
# or hides its /proc entries between process_iter() and our reads.
_VANISHED = (psutil.NoSuchProcess, psutil.AccessDenied)


@dataclass(frozen=True)
class HostUsage:
    """Whole-host CPU and memory; cpu_ratio is None until two samples exist."""

    cpu_ratio: float | None
    cpu_count: int
    memory_total_bytes: int
    memory_available_bytes: int


@dataclass(frozen=True)
class GroupUsage:
    """The processes of one user running one command, summed."""

    command: str
    user: str
    cpu_ratio: float | None
    resident_bytes: int
    processes: int


@dataclass(frozen=True)
class ProcessSample:
    """One reading of the host and its top process groups plus the rest."""

    host: HostUsage
    groups: tuple[GroupUsage, ...]
    skipped: int


@dataclass
class _Totals:
    cpu_seconds: float = 0.0
    resident_bytes: int = 0
    processes: int = 0


class ProcessSampler:
    """Turns two successive reads of /proc into CPU shares per process group.

    CPU usage is a share of the whole host's capacity: CPU seconds spent in the
    window divided by (window seconds * CPU count), so it stays in 0-1.
    """

    def __init__(
        self,
        top_groups: int,
        ps: Any = psutil,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._top = top_groups
        self._ps = ps
        self._clock = clock
        self._wall = wall
        self._last_at: tuple[float, float] | None = None
        self._last_host: tuple[float, float] | None = None
        self._last_cpu: dict[tuple[int, float], float] = {}

    def sample(self) -> ProcessSample:
        """Read the host and every process.

        CPU shares cover the time since the previous call; None on the first.
        """
        now, now_wall = self._clock(), self._wall()
        window = None
        if self._last_at is not None and now > self._last_at[0]:
            window = now - self._last_at[0]
        since_wall = None if self._last_at is None else self._last_at[1]

        host = self._read_host()
        totals, skipped = self._read_processes(since_wall)

        capacity = None if window is None else window * host.cpu_count
        groups = _rank(totals, capacity, self._top)
        self._last_at = (now, now_wall)

        log.debug("processes sampled groups=%s skipped=%s", len(totals), skipped)
        return ProcessSample(host=host, groups=groups, skipped=skipped)

    def _read_host(self) -> HostUsage:
        busy, total = _busy_and_total(self._ps.cpu_times())
        ratio = None
        if self._last_host is not None and total > self._last_host[1]:
            ratio = _clamp((busy - self._last_host[0]) / (total - self._last_host[1]))
        self._last_host = (busy, total)

        memory = self._ps.virtual_memory()
        # cpu_count() is None when the kernel does not say; one CPU keeps the
        # division defined and is right for the containers where that happens.
        cpu_count = self._ps.cpu_count() or 1
        return HostUsage(
            cpu_ratio=ratio,
            cpu_count=cpu_count,
            memory_total_bytes=memory.total,
            memory_available_bytes=memory.available,
        )

    def _read_processes(
        self, since_wall: float | None
    ) -> tuple[dict[tuple[str, str], _Totals], int]:
        totals: dict[tuple[str, str], _Totals] = {}
        seen: dict[tuple[int, float], float] = {}
        skipped = 0

        for proc in self._ps.process_iter():
            try:
                with proc.oneshot():
                    created = proc.create_time()
                    group = (proc.username(), proc.name())
                    times = proc.cpu_times()
                    resident = proc.memory_info().rss
            except _VANISHED as exc:
                skipped += 1
                log.debug("process skipped pid=%s error=%r", proc.pid, exc)
                continue

            # (pid, start time) names a process; a pid alone may be reused.
            key = (proc.pid, created)
            cpu = times.user + times.system
            seen[key] = cpu

            entry = totals.setdefault(group, _Totals())
            entry.cpu_seconds += self._cpu_in_window(key, cpu, created, since_wall)
            entry.resident_bytes += resident
            entry.processes += 1

        self._last_cpu = seen
        return totals, skipped

    def _cpu_in_window(
        self, key: tuple[int, float], cpu: float, created: float, since: float | None
    ) -> float:
        if key in self._last_cpu:
            return max(0.0, cpu - self._last_cpu[key])
        if since is not None and created >= since:
            # Started inside the window: all its CPU time was spent there.
            return cpu
        # Older but unseen last time (it was unreadable): its CPU time cannot be
        # split into before and inside the window, so it starts counting now.
        return 0.0


def _rank(
    totals: dict[tuple[str, str], _Totals], capacity: float | None, top: int
) -> tuple[GroupUsage, ...]:
    groups = [
        GroupUsage(
            command=command,
            user=user,
            cpu_ratio=None if capacity is None else _clamp(t.cpu_seconds / capacity),
            resident_bytes=t.resident_bytes,
            processes=t.processes,
        )
        for (user, command), t in totals.items()
    ]
    # Before the first window all shares are None and memory decides the order.
    groups.sort(
        key=lambda g: (-(g.cpu_ratio or 0.0), -g.resident_bytes, g.user, g.command)
    )

    kept, rest = groups[:top], groups[top:]
    if not rest:
        return tuple(kept)

    rest_cpu = sum(g.cpu_ratio or 0.0 for g in rest)
    other = GroupUsage(
        command=OTHER,
        user=OTHER,
        cpu_ratio=None if capacity is None else _clamp(rest_cpu),
        resident_bytes=sum(g.resident_bytes for g in rest),
        processes=sum(g.processes for g in rest),
    )
    return (*kept, other)


def _busy_and_total(times: Any) -> tuple[float, float]:
    # Linux counts guest time inside user and nice as well; leaving it in the
    # sum would count it twice. iowait is idle time spent waiting on disks.
    total = (
        sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    )
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


def _clamp(ratio: float) -> float:
    # Reads of /proc are not atomic, so a delta can overshoot by a few ticks.
    return min(1.0, max(0.0, ratio))
