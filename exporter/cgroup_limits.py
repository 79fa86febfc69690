"""The CPU and memory limits of the cgroup a process group runs in, read from
the cgroup v2 or v1 files under the mounts in /proc/self/mountinfo; without
readable cgroup mounts every group simply has no limits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from exporter.cgroup_mounts import (
    CONTROLLERS,
    Mount,
    controller_paths,
    directory_of,
    parse_mountinfo,
)
from exporter.procfs import ProcFs

log = logging.getLogger(__name__)

# v1 writes "no limit" as the largest page count times the page size, a little
# under 2**63 whatever the page size; nobody sets a real limit that high.
_V1_UNLIMITED = 1 << 62
# cri-o and podman keep each container's conmon monitor in a scope of its own
# next to the container's; its few MiB are not under the container's limits.
_MONITORS = ("crio-conmon-", "libpod-conmon-")

_Member = tuple[int, int]
_Paths = tuple[str | None, ...]


@dataclass(frozen=True)
class CgroupLimits:
    """None where there is no limit, it cannot be read, or the group has no
    cgroup of its own."""

    cpu_cores: float | None = None
    memory_bytes: int | None = None
    memory_high_bytes: int | None = None
    oom_kills: int | None = None


NO_LIMITS = CgroupLimits()


def read_text(path: str) -> str | None:
    """A whole small file, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError:
        return None


class CgroupLimitReader:
    """Finds each group's cgroup and reads its limits, once per cgroup per cycle.

    A group keyed ("container", id) or ("unit", name) owns the cgroup named by
    that id or unit; its processes may sit in cgroups below it. A group of one
    command ("command", user, comm) owns a cgroup only when all its processes
    are in it and nothing else is, so two commands sharing a scope do not each
    claim its whole limit.
    """

    def __init__(
        self,
        procfs: ProcFs,
        mountinfo: str | None = None,
        read: Callable[[str], str | None] = read_text,
    ) -> None:
        self._procfs = procfs
        # Our own mount table: it says where this process can open the files.
        self._mountinfo = mountinfo or f"{procfs.root}/self/mountinfo"
        self._read_file = read
        self._mounts: dict[str, Mount] | None = None
        self._paths: dict[_Member, _Paths] = {}
        self._files: dict[str, str | None] = {}

    def read(
        self, groups: Sequence[tuple[tuple[str, ...], Iterable[_Member]]]
    ) -> list[CgroupLimits]:
        """The limits of each (group key, its (pid, start ticks)) in order."""
        mounts = self._load_mounts()
        if not mounts:
            return [NO_LIMITS for _ in groups]

        self._files = {}
        paths: dict[_Member, _Paths] = {}
        limits = []
        for key, members in groups:
            # A process that exited since /proc was listed has no say.
            known = []
            for member in members:
                found = self._paths.get(member) or self._process_paths(member)
                if found is not None:
                    paths[member] = found
                    known.append(member)
            limits.append(self._group(key, known, paths, mounts))

        # A process keeps its cgroup for life here, as its identity does; only
        # those of this cycle's groups are kept, others are read again if they
        # come back.
        self._paths = paths
        return limits

    def _load_mounts(self) -> dict[str, Mount]:
        if self._mounts is None:
            text = self._read_file(self._mountinfo) or ""
            self._mounts = parse_mountinfo(text)
            found = " ".join(
                f"{c}=v{m.version}:{m.directory}" for c, m in self._mounts.items()
            )
            log.info("cgroup mounts %s", found or "none")
        return self._mounts

    def _process_paths(self, member: _Member) -> _Paths | None:
        text = self._procfs.cgroup(member[0])
        if text is None:
            return None
        assert self._mounts is not None
        return controller_paths(text, self._mounts)

    def _group(
        self,
        key: tuple[str, ...],
        members: list[_Member],
        paths: dict[_Member, _Paths],
        mounts: dict[str, Mount],
    ) -> CgroupLimits:
        directories = []
        for index, controller in enumerate(CONTROLLERS):
            owned = {_owner(key, paths[m][index]) for m in members}
            if key[0] == "container" and len(owned) > 1:
                owned = {path for path in owned if not _is_monitor(path)}
            # Several cgroups, or none: no single limit applies to the group.
            path = owned.pop() if len(owned) == 1 else None
            directory = None if path is None else directory_of(path, mounts[controller])
            if directory is not None and key[0] == "command":
                directory = self._exclusive(directory, {m[0] for m in members})
            directories.append(directory)
        return self.limits_at(*directories)

    def limits_at(self, cpu: str | None, memory: str | None) -> CgroupLimits:
        """The limits in a cpu and a memory cgroup directory (None for none)."""
        versions = {c: m.version for c, m in self._load_mounts().items()}
        return CgroupLimits(
            cpu_cores=None if cpu is None else self._cpu(versions["cpu"], cpu),
            memory_bytes=None if memory is None else self._memory(versions, memory),
            memory_high_bytes=None
            if memory is None or versions["memory"] != 2
            else _bytes_or_max(self._file(f"{memory}/memory.high")),
            oom_kills=None if memory is None else self._oom_kills(versions, memory),
        )

    def _exclusive(self, directory: str, pids: set[int]) -> str | None:
        listed = self._file(f"{directory}/cgroup.procs")
        if listed is None:
            return None
        inside = {int(pid) for pid in listed.split()}
        return directory if inside and inside <= pids else None

    def _cpu(self, version: int, directory: str) -> float | None:
        if version == 2:
            fields = (self._file(f"{directory}/cpu.max") or "").split()
        else:
            fields = [
                (self._file(f"{directory}/cpu.cfs_quota_us") or "").strip(),
                (self._file(f"{directory}/cpu.cfs_period_us") or "").strip(),
            ]
        # "max <period>" in v2 and a quota of -1 in v1 mean no limit.
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            return None
        quota, period = int(fields[0]), int(fields[1])
        return quota / period if quota > 0 and period > 0 else None

    def _memory(self, version: dict[str, int], directory: str) -> int | None:
        if version["memory"] == 2:
            return _bytes_or_max(self._file(f"{directory}/memory.max"))
        limit = _bytes_or_max(self._file(f"{directory}/memory.limit_in_bytes"))
        return None if limit is None or limit >= _V1_UNLIMITED else limit

    def _oom_kills(self, version: dict[str, int], directory: str) -> int | None:
        # v2 counts kills in the cgroup and below; v1 (Linux 4.13 and later)
        # puts the same counter in memory.oom_control.
        name = "memory.events" if version["memory"] == 2 else "memory.oom_control"
        for line in (self._file(f"{directory}/{name}") or "").splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] == "oom_kill" and fields[1].isdigit():
                return int(fields[1])
        return None

    def _file(self, path: str) -> str | None:
        if path not in self._files:
            self._files[path] = self._read_file(path)
        return self._files[path]


def _owner(key: tuple[str, ...], path: str | None) -> str | None:
    # A container's or unit's own cgroup is the one its name appears in; the
    # processes may be in cgroups below it (nested runtimes, delegated units).
    # TODO: a unit whose cgroup holds other units (user@.service and the user's
    # services) claims a limit those share; it stays because such limits are
    # rare there. The fix is to give a unit no limit when a deeper unit exists.
    if path is None or key[0] == "command":
        return path
    parts = path.split("/")
    if key[0] == "container":
        hits = [i for i, part in enumerate(parts) if key[1] in part]
        index = hits[0] if hits else None
    else:
        hits = [i for i, part in enumerate(parts) if part == key[1]]
        index = hits[-1] if hits else None
    return None if index is None else "/".join(parts[: index + 1])


def _is_monitor(path: str | None) -> bool:
    return path is not None and path.rsplit("/", 1)[-1].startswith(_MONITORS)


def _bytes_or_max(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None
