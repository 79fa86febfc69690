"""Who a process is: user, container, pod, unit and (when asked) command line,
read once per process from /proc and kept while the process lives."""

from __future__ import annotations

import pwd
import threading
from collections.abc import Callable
from dataclasses import dataclass

from exporter.cgroup import NO_CGROUP, CgroupIdentity, parse_cgroup
from exporter.cmdline import redact_cmdline
from exporter.procfs import ProcFs


@dataclass(frozen=True)
class Identity:
    """The parts of a process that do not change while it runs."""

    user: str
    cgroup: CgroupIdentity
    cmdline: str = ""


def user_name(uid: int) -> str:
    """The login name of `uid`, or the number where no name is known."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        # Common inside containers whose passwd file lacks the host's users.
        return str(uid)


class IdentityCache:
    """Identities keyed by (pid, start ticks), since a pid alone may be reused.

    Shared by the host and GPU process readers, which run in different threads.
    """

    def __init__(
        self,
        procfs: ProcFs,
        user_names: Callable[[int], str] = user_name,
        cmdline: bool = False,
    ) -> None:
        self._procfs = procfs
        self._user_names = user_names
        self._cmdline = cmdline
        self._names: dict[int, str] = {}
        self._entries: dict[tuple[int, int], tuple[Identity, int]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, pid: int, start_ticks: int) -> Identity | None:
        """The process's identity; None once it has exited."""
        key = (pid, start_ticks)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries[key] = (entry[0], self._generation)
                return entry[0]

        identity = self._read(pid)
        if identity is None:
            return None
        with self._lock:
            self._entries[key] = (identity, self._generation)
        return identity

    def sweep(self) -> None:
        """Forget processes not asked about since the previous sweep."""
        with self._lock:
            keep = self._generation
            self._entries = {
                key: entry for key, entry in self._entries.items() if entry[1] >= keep
            }
            self._generation += 1

    def __len__(self) -> int:
        return len(self._entries)

    def _read(self, pid: int) -> Identity | None:
        uid = self._procfs.uid(pid)
        if uid is None:
            return None

        name = self._names.get(uid)
        if name is None:
            name = self._names[uid] = self._user_names(uid)
        text = self._procfs.cgroup(pid)
        cgroup = NO_CGROUP if not text else parse_cgroup(text)
        cmdline = ""
        if self._cmdline:
            cmdline = redact_cmdline(self._procfs.cmdline(pid) or [])

        return Identity(user=name, cgroup=cgroup, cmdline=cmdline)
