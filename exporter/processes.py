"""Host CPU, memory and OOM kills, and processes summed into groups: by user and
command, by container, or by systemd unit. Needs a /proc tree (see procfs); a
process that exits while it is being read is skipped and counted. A group that
owns a cgroup carries its limits (see cgroup_limits).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.cgroup_limits import NO_LIMITS, CgroupLimitReader, CgroupLimits
from exporter.identity import Identity, IdentityCache
from exporter.procfs import ProcFs

log = logging.getLogger(__name__)

OTHER = "(other)"
GROUPINGS = ("command", "container", "unit")

_Key = tuple[str, ...]


@dataclass(frozen=True)
class HostUsage:
    """Whole-host figures; cpu_ratio is None until two samples exist."""

    cpu_ratio: float | None
    cpu_count: int
    memory_total_bytes: int
    memory_available_bytes: int
    oom_kills: int | None = None


@dataclass(frozen=True)
class GroupUsage:
    """One group's processes, summed; the *_total fields count since start."""

    command: str
    user: str
    cpu_ratio: float | None
    resident_bytes: int
    processes: int
    container_id: str = ""
    pod_uid: str = ""
    unit: str = ""
    threads: int = 0
    open_files: int = 0
    cpu_seconds_total: float = 0.0
    read_bytes_total: float = 0.0
    written_bytes_total: float = 0.0
    cmdline: str = ""
    limits: CgroupLimits = NO_LIMITS


@dataclass(frozen=True)
class ProcessSample:
    """One reading of the host and its top process groups plus the rest."""

    host: HostUsage
    groups: tuple[GroupUsage, ...]
    skipped: int


@dataclass
class _Totals:
    """A group within one cycle; labels come from its oldest process."""

    comm: str = ""
    identity: Identity | None = None
    oldest: int = -1
    cpu: float = 0.0
    read: float = 0.0
    written: float = 0.0
    resident: int = 0
    processes: int = 0
    threads: int = 0
    open_files: int = 0
    # (pid, start ticks) of each process, to find the group's cgroup.
    members: list[tuple[int, int]] = field(default_factory=list)


def boottime() -> float:
    """Seconds since boot, the clock /proc/<pid>/stat start times count on."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class ProcessSampler:
    """Turns two successive reads of /proc into CPU shares and counters per group.

    CPU usage is a share of the whole host's capacity: CPU seconds spent in the
    window divided by (window seconds * CPU count), so it stays in 0-1.
    """

    def __init__(
        self,
        top_groups: int,
        procfs: ProcFs,
        identities: IdentityCache,
        grouping: str = "command",
        clock: Callable[[], float] = boottime,
        cgroups: CgroupLimitReader | None = None,
    ) -> None:
        if grouping not in GROUPINGS:
            raise ValueError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")
        self._top = top_groups
        self._procfs = procfs
        self._identities = identities
        self._grouping = grouping
        self._clock = clock
        self._cgroups = cgroups or CgroupLimitReader(procfs)
        self._last_at: float | None = None
        self._last_host: tuple[float, float] | None = None
        self._last: dict[tuple[int, int], tuple[float, float, float]] = {}
        self._counters: dict[_Key, tuple[float, float, float]] = {}
        # pid -> (start ticks, comm) of the last pass, for the GPU process
        # reader, which would otherwise read the same stat files again.
        self.started: dict[int, tuple[int, str]] = {}

    def sample(self) -> ProcessSample:
        """Read the host and every process; shares cover the time since last call."""
        now = self._clock()
        window = None
        if self._last_at is not None and now > self._last_at:
            window = now - self._last_at

        host = self._read_host()
        totals, skipped = self._read_processes(self._last_at)
        self._identities.sweep()

        capacity = None if window is None else window * host.cpu_count
        groups = self._rank(totals, capacity)
        self._last_at = now

        log.debug("processes sampled groups=%s skipped=%s", len(totals), skipped)
        return ProcessSample(host=host, groups=groups, skipped=skipped)

    def _read_host(self) -> HostUsage:
        cpu = self._procfs.host_cpu()
        ratio = None
        if self._last_host is not None and cpu.total_seconds > self._last_host[1]:
            busy = cpu.busy_seconds - self._last_host[0]
            ratio = _clamp(busy / (cpu.total_seconds - self._last_host[1]))
        self._last_host = (cpu.busy_seconds, cpu.total_seconds)

        memory = self._procfs.host_memory()
        return HostUsage(
            cpu_ratio=ratio,
            cpu_count=cpu.cpu_count,
            memory_total_bytes=memory.total_bytes,
            memory_available_bytes=memory.available_bytes,
            oom_kills=self._procfs.oom_kills(),
        )

    def _read_processes(self, since: float | None) -> tuple[dict[_Key, _Totals], int]:
        procfs = self._procfs
        totals: dict[_Key, _Totals] = {}
        seen: dict[tuple[int, int], tuple[float, float, float]] = {}
        started: dict[int, tuple[int, str]] = {}
        skipped = 0
        # Bound once: this loop runs for every process of the host.
        stat_of, io_of, files_of = procfs.stat, procfs.io, procfs.open_files
        identity_of, last, key_of = self._identities.get, self._last, self._key

        pids = procfs.pids()
        for pid in pids:
            stat = stat_of(pid)
            identity = None if stat is None else identity_of(pid, stat.start_ticks)
            if stat is None or identity is None:
                skipped += 1
                log.debug("process skipped pid=%s", pid)
                continue

            # Kernel threads have no files and no I/O of their own, and are most
            # of the processes on a big host: two reads saved for each.
            # Storage I/O is unreadable for other users' processes unless the
            # exporter runs as root; their bytes count as zero, not as an error.
            kernel = stat.kernel_thread
            io = (0, 0) if kernel else io_of(pid) or (0, 0)
            key = (pid, stat.start_ticks)
            started[pid] = (stat.start_ticks, stat.comm)
            now = (stat.cpu_seconds, float(io[0]), float(io[1]))
            seen[key] = now
            before = last.get(key)
            if before is None:
                # Started inside the window: all of it was spent there. Older but
                # unseen (unreadable last time): it starts counting now.
                new = since is not None and stat.start_seconds >= since
                before = (0.0, 0.0, 0.0) if new else now

            group_key = key_of(stat.comm, identity)
            entry = totals.get(group_key)
            if entry is None:
                entry = totals[group_key] = _Totals()
            if entry.oldest < 0 or stat.start_ticks < entry.oldest:
                entry.oldest = stat.start_ticks
                entry.comm, entry.identity = stat.comm, identity
            # Counters only grow; a smaller value is a reading racing an exit.
            if now[0] > before[0]:
                entry.cpu += now[0] - before[0]
            if now[1] > before[1]:
                entry.read += now[1] - before[1]
            if now[2] > before[2]:
                entry.written += now[2] - before[2]
            entry.resident += stat.resident_bytes
            entry.processes += 1
            entry.members.append(key)
            entry.threads += stat.threads
            if not kernel:
                entry.open_files += files_of(pid) or 0

        self._last = seen
        self.started = started
        procfs.retain(set(pids))
        return totals, skipped

    def _key(self, comm: str, identity: Identity) -> _Key:
        cgroup = identity.cgroup
        if self._grouping == "container" and cgroup.container_id:
            return ("container", cgroup.container_id)
        if self._grouping == "unit" and cgroup.unit:
            return ("unit", cgroup.unit)
        return ("command", identity.user, comm)

    def _labels(self, key: _Key, entry: _Totals) -> dict[str, str]:
        identity = entry.identity
        assert identity is not None
        labels = {"command": entry.comm, "user": identity.user}
        labels["cmdline"] = identity.cmdline
        if key[0] == "container":
            labels["container_id"] = identity.cgroup.container_id
            labels["pod_uid"] = identity.cgroup.pod_uid
        elif key[0] == "unit":
            labels["unit"] = identity.cgroup.unit
        return labels

    def _rank(
        self, totals: dict[_Key, _Totals], capacity: float | None
    ) -> tuple[GroupUsage, ...]:
        # Before the first window all shares are unknown and memory decides.
        order = sorted(
            totals.items(),
            key=lambda kv: (-kv[1].cpu, -kv[1].resident, kv[0]),
        )
        kept, rest = order[: self._top], order[self._top :]

        limits = self._cgroups.read([(key, entry.members) for key, entry in kept])
        counters: dict[_Key, tuple[float, float, float]] = {}
        groups = []
        for (key, entry), limit in zip(kept, limits, strict=True):
            counters[key] = self._advance(key, entry.cpu, entry.read, entry.written)
            labels = self._labels(key, entry)
            groups.append(_usage(entry, labels, capacity, counters[key], limit))

        # The rest's counters keep counting across cycles even while every group
        # fits, so that the (other) series never goes backwards.
        other = _Totals()
        for _, entry in rest:
            for name in ("cpu", "read", "written", "resident"):
                setattr(other, name, getattr(other, name) + getattr(entry, name))
            other.processes += entry.processes
            other.threads += entry.threads
            other.open_files += entry.open_files
        other_key: _Key = (OTHER,)
        counters[other_key] = self._advance(
            other_key, other.cpu, other.read, other.written
        )
        if rest:
            labels = {"command": OTHER, "user": OTHER}
            groups.append(_usage(other, labels, capacity, counters[other_key]))

        self._counters = counters
        return tuple(groups)

    def _advance(
        self, key: _Key, cpu: float, read: float, written: float
    ) -> tuple[float, float, float]:
        before = self._counters.get(key, (0.0, 0.0, 0.0))
        return before[0] + cpu, before[1] + read, before[2] + written


def _usage(
    entry: _Totals,
    labels: dict[str, str],
    capacity: float | None,
    counters: tuple[float, float, float],
    limits: CgroupLimits = NO_LIMITS,
) -> GroupUsage:
    return GroupUsage(
        command=labels["command"],
        user=labels["user"],
        container_id=labels.get("container_id", ""),
        pod_uid=labels.get("pod_uid", ""),
        unit=labels.get("unit", ""),
        cmdline=labels.get("cmdline", ""),
        cpu_ratio=None if capacity is None else _clamp(entry.cpu / capacity),
        resident_bytes=entry.resident,
        processes=entry.processes,
        threads=entry.threads,
        open_files=entry.open_files,
        cpu_seconds_total=counters[0],
        read_bytes_total=counters[1],
        written_bytes_total=counters[2],
        limits=limits,
    )


def _clamp(ratio: float) -> float:
    # Reads of /proc are not atomic, so a delta can overshoot by a few ticks.
    return min(1.0, max(0.0, ratio))
