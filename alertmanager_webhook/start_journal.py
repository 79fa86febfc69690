"""Which actions' effects have begun, so that a crash's survivors run once.

An action that is not idempotent (a program, a signal) is marked running in
the database before it starts; a crash after that mark left it unknown
whether it took effect, so it was never run again, and an action killed
before its program even started was lost. Now the action writes its id here
at the moment it begins: a program's own process writes it just before it
becomes the program (between fork and exec), a signal's sender just before
the first signal. After a crash, a running action without a line here never
began and is run again; one with a line stays failed, outcome unknown.

The file is `<database>.started` beside the database: one id per line,
appended through one descriptor, emptied at each start and, once it has
grown past COMPACT_BYTES, whenever no action is in flight.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from alertmanager_webhook.siblings import beside

log = logging.getLogger(__name__)

# Emptied only once this large: truncating after every action costs a write
# of the inode for nothing.
COMPACT_BYTES = 64 * 1024


class StartJournal:
    def __init__(self, path: str, fsync: bool = False) -> None:
        self.path = path
        # Under `database_sync: full` a mark survives a power cut too.
        self._fsync = fsync
        self._fd: int | None = None
        self._in_flight = 0
        self._lock = threading.Lock()

    @classmethod
    def beside(cls, database: str, fsync: bool = False) -> StartJournal:
        return cls(beside(database, ".started"), fsync)

    def begun(self) -> set[int] | None:
        """The ids written so far; None when there is no journal to trust."""
        try:
            with open(self.path, encoding="ascii") as fh:
                text = fh.read()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning(
                "start journal unreadable, every interrupted action counts as "
                "begun path=%s err=%s",
                self.path,
                exc,
            )
            return None
        if text and not text.endswith("\n"):
            # A line cut short (a power cut): whose it was is unknown, so no
            # absence can be trusted.
            return None
        try:
            return {int(line) for line in text.split()}
        except ValueError:
            log.warning(
                "start journal holds what is not an action id, every interrupted "
                "action counts as begun path=%s",
                self.path,
            )
            return None

    def open(self) -> None:
        """Start anew: the crash's survivors are settled, their lines spent."""
        self._open(os.O_TRUNC)

    def _open(self, flags: int = 0) -> int:
        fd = os.open(
            self.path,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | flags,
            0o600,
        )
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = fd
        return fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def mark(self, action_id: int) -> Callable[[], None]:
        """What to call when action `action_id` begins, in this process or a child.

        Safe between fork and exec: one write (and fsync) to a descriptor the
        child inherits, with nothing to allocate or lock.
        """
        # Opened here too when no recovery ran first (a worker driven inline).
        fd = self._fd if self._fd is not None else self._open()
        fsync = self._fsync
        line = f"{action_id}\n".encode()

        def began() -> None:
            os.write(fd, line)
            if fsync:
                os.fsync(fd)

        return began

    def entering(self) -> None:
        """An action that may write a mark is about to begin."""
        with self._lock:
            self._in_flight += 1

    def left(self) -> None:
        """That action has been recorded as ended; empty the file when idle."""
        with self._lock:
            self._in_flight -= 1
            if self._in_flight or self._fd is None:
                return
            if os.fstat(self._fd).st_size >= COMPACT_BYTES:
                os.ftruncate(self._fd, 0)
