"""/proc files held open between collections and read again with pread().

procfs builds a file's text on every read from offset 0, so an open file is as
fresh as a new one; keeping it saves the path lookup, open and close, about
half the system time of a collection at a thousand processes. An open file
belongs to the process it was opened for: once that process exits, reads fail
with ESRCH, even when its pid is reused, and the file is opened again.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# stat and io are well below this; their text is built whole on each read.
_SIZE = 2048
# File descriptors left to everything else the exporter opens.
_RESERVE = 1024


def keepable_files() -> int:
    """How many files the open-files limit leaves for keeping."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(0, soft - _RESERVE)


class KeptFiles:
    """Up to `limit` open /proc/<pid>/<name> files; for one thread at a time."""

    def __init__(self, root: str, limit: int) -> None:
        self._root = root
        self._limit = limit
        self._fds: dict[int, dict[str, int]] = {}
        self._count = 0

    def read(self, pid: int, name: str) -> bytes | None:
        """The file's text now; None when the process is gone or hides it."""
        files = self._fds.get(pid)
        fd = None if files is None else files.get(name)
        if fd is not None:
            try:
                return os.pread(fd, _SIZE, 0)
            except OSError:
                # The process it was opened for has exited; the pid may already
                # name a new one, which gets a file of its own below.
                self._close(pid)

        return self._first_read(pid, name, os.O_RDONLY, _read_text)

    def size(self, pid: int, name: str) -> int | None:
        """st_size of a /proc/<pid> directory (fd: the open files)."""
        files = self._fds.get(pid)
        fd = None if files is None else files.get(name)
        if fd is not None:
            try:
                return os.fstat(fd).st_size
            except OSError:
                # ENOENT once the process has exited: as in read().
                self._close(pid)
        flags = os.O_RDONLY | os.O_DIRECTORY
        return self._first_read(pid, name, flags, _size)

    def retain(self, pids: set[int]) -> None:
        """Close the files of processes not in `pids`."""
        for pid in self._fds.keys() - pids:
            self._close(pid)

    def close(self) -> None:
        for pid in list(self._fds):
            self._close(pid)

    def __len__(self) -> int:
        return self._count

    def _first_read(
        self, pid: int, name: str, flags: int, read: Callable[[int], T]
    ) -> T | None:
        try:
            fd = os.open(f"{self._root}/{pid}/{name}", flags | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            value = read(fd)
        except OSError:
            os.close(fd)
            return None
        if self._count < self._limit:
            self._fds.setdefault(pid, {})[name] = fd
            self._count += 1
        else:
            os.close(fd)
        return value

    def _close(self, pid: int) -> None:
        # All of a process's files go together: one failing means it exited.
        for fd in self._fds.pop(pid, {}).values():
            os.close(fd)
            self._count -= 1


def _read_text(fd: int) -> bytes:
    return os.pread(fd, _SIZE, 0)


def _size(fd: int) -> int:
    return os.fstat(fd).st_size
