"""Reads the host and its processes straight from a /proc tree, one file per read.

Needs Linux's /proc (or a copy of its layout under another root, as the tests
use); a process that exits between two reads shows up as None, not an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

from exporter.kept_files import KeptFiles

# Linux exposes times in /proc/<pid>/stat in clock ticks of this many per second.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

_BUFFER = 8192
_SMALL = 2048
# The flags field of /proc/<pid>/stat marks kernel threads with PF_KTHREAD.
_PF_KTHREAD = 0x00200000


class ProcStat(NamedTuple):
    """The parts of /proc/<pid>/stat the exporter uses, in base units.

    A tuple rather than a dataclass: one is made per process per cycle.
    """

    comm: str
    kernel_thread: bool
    cpu_seconds: float
    threads: int
    start_ticks: int
    start_seconds: float
    resident_bytes: int


@dataclass(frozen=True)
class HostCpu:
    """Busy and total CPU seconds since boot, and the number of logical CPUs."""

    busy_seconds: float
    total_seconds: float
    cpu_count: int


@dataclass(frozen=True)
class HostMemory:
    total_bytes: int
    available_bytes: int


class ProcFs:
    """A /proc tree under `root`; every method reads fresh, none caches.

    With `keep_open`, up to that many stat, io and fd files stay open between
    reads (see kept_files); such a ProcFs is for one thread at a time.
    """

    def __init__(
        self,
        root: str = "/proc",
        clock_ticks: int = CLOCK_TICKS,
        page_size: int = PAGE_SIZE,
        fd_count_in_size: bool | None = None,
        keep_open: int = 0,
    ) -> None:
        self.root = root
        self._ticks = float(clock_ticks)
        self._page = page_size
        self._kept = KeptFiles(root, keep_open) if keep_open > 0 else None
        # Only procfs reports a directory's entry count as its size; a copy of
        # its layout on another file system (the tests' trees) must be listed.
        if fd_count_in_size is None:
            fd_count_in_size = root == "/proc" and _fd_count_in_size()
        self._fd_size = fd_count_in_size

    def pids(self) -> list[int]:
        """Every process id listed now."""
        return [int(name) for name in os.listdir(self.root) if name.isdigit()]

    def stat(self, pid: int) -> ProcStat | None:
        """CPU, threads, start time and resident memory; None once it has exited."""
        if self._kept is not None:
            data = self._kept.read(pid, "stat")
        else:
            data = self._read(f"{self.root}/{pid}/stat", single=True)
        if not data:
            return None

        # comm may hold spaces and parentheses, so split at the last ')'.
        end = data.rindex(b")")
        # Fields counted from state (field 3 in proc(5)), so utime is 14 - 3;
        # the split stops after rss, the last one needed.
        fields = data[end + 1 :].split(None, 22)
        start = int(fields[19])
        # Positional: this runs once per process per cycle.
        return ProcStat(
            data[data.index(b"(") + 1 : end].decode(errors="replace"),
            int(fields[6]) & _PF_KTHREAD != 0,
            (int(fields[11]) + int(fields[12])) / self._ticks,
            int(fields[17]),
            start,
            start / self._ticks,
            int(fields[21]) * self._page,
        )

    def uid(self, pid: int) -> int | None:
        """The real user id of the process (the first of status's Uid: line)."""
        data = self._read(f"{self.root}/{pid}/status")
        if not data:
            return None
        start = data.find(b"\nUid:")
        if start < 0:
            return None
        return int(data[start + 5 :].split(None, 1)[0])

    def io(self, pid: int) -> tuple[int, int] | None:
        """Bytes read from and written to storage; None when not readable."""
        if self._kept is not None:
            data = self._kept.read(pid, "io")
        else:
            data = self._read(f"{self.root}/{pid}/io", single=True)
        if not data:
            return None
        # rchar, wchar, syscr, syscw, read_bytes, write_bytes, in this order
        # since Linux 2.6.20: "read_bytes: N" is the fifth name-value pair.
        tokens = data.split()
        if len(tokens) < 12 or tokens[8] != b"read_bytes:":
            return None
        return int(tokens[9]), int(tokens[11])

    def open_files(self, pid: int) -> int | None:
        """Open file descriptors; None when the fd directory is not readable."""
        if self._fd_size and self._kept is not None:
            return self._kept.size(pid, "fd")
        path = f"{self.root}/{pid}/fd"
        try:
            if self._fd_size:
                return os.stat(path).st_size
            return len(os.listdir(path))
        except OSError:
            return None

    def retain(self, pids: set[int]) -> None:
        """Close the kept files of processes not in `pids`."""
        if self._kept is not None:
            self._kept.retain(pids)

    def close(self) -> None:
        """Close every kept file."""
        if self._kept is not None:
            self._kept.close()

    def cgroup(self, pid: int) -> str | None:
        data = self._read(f"{self.root}/{pid}/cgroup")
        return None if data is None else data.decode(errors="replace")

    def cmdline(self, pid: int) -> list[str] | None:
        """The arguments, or None; kernel threads have an empty list."""
        data = self._read(f"{self.root}/{pid}/cmdline")
        if data is None:
            return None
        return [arg.decode(errors="replace") for arg in data.split(b"\0") if arg]

    def host_cpu(self) -> HostCpu:
        data = self._read(f"{self.root}/stat", required=True) or b""
        lines = data.splitlines()
        values = [int(v) for v in lines[0].split()[1:]]
        # user nice system idle iowait irq softirq steal guest guest_nice: guest
        # time is inside user and nice already, iowait is idle time.
        total = sum(values[:8])
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        cpus = sum(1 for line in lines[1:] if line[:3] == b"cpu")
        return HostCpu(
            busy_seconds=(total - idle) / self._ticks,
            total_seconds=total / self._ticks,
            cpu_count=max(cpus, 1),
        )

    def host_memory(self) -> HostMemory:
        data = self._read(f"{self.root}/meminfo", required=True) or b""
        values = {}
        for line in data.splitlines():
            key, _, rest = line.partition(b":")
            values[key] = rest.split()[0] if rest.split() else b"0"
        # meminfo counts in kibibytes whatever its "kB" says.
        return HostMemory(
            total_bytes=int(values[b"MemTotal"]) * 1024,
            available_bytes=int(values.get(b"MemAvailable", b"0")) * 1024,
        )

    def oom_kills(self) -> int | None:
        """OOM kills since boot, from /proc/vmstat; None before Linux 4.13."""
        data = self._read(f"{self.root}/vmstat")
        if data is None:
            return None
        for line in data.splitlines():
            if line.startswith(b"oom_kill "):
                return int(line.split()[1])
        return None

    def _read(
        self, path: str, required: bool = False, single: bool = False
    ) -> bytes | None:
        # os.open/os.read skip the buffered file object; at a thousand processes
        # per cycle that is a third of the collection's cost.
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            if required:
                raise
            return None
        try:
            # stat and io are built whole by one read and stay far below 2 KiB
            # (52 numbers); the rest are read until the kernel has no more.
            size = _SMALL if single else _BUFFER
            chunks = [os.read(fd, size)]
            while len(chunks[-1]) == size or (not single and chunks[-1]):
                chunks.append(os.read(fd, size))
            return b"".join(chunks)
        except OSError:
            if required:
                raise
            return None
        finally:
            os.close(fd)


def _fd_count_in_size() -> bool:
    # Since Linux 6.2 the size of /proc/<pid>/fd is its number of open files,
    # one stat() instead of listing every descriptor. This process has stdin,
    # stdout and stderr at least, so older kernels show here as a size of 0.
    try:
        return os.stat("/proc/self/fd").st_size > 0
    except OSError:
        return False
