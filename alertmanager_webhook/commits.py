"""Group commit: notifications that arrive together share one transaction.

While one commit waits for the disk (an fsync under `database_sync: full`),
the notifications that arrive meanwhile queue up, and the next commit takes
them all: the disk is synced once per group rather than once per notification.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Waiting(Generic[T]):
    write: Callable[[sqlite3.Connection], T]
    done: bool = False
    duplicate: bool = False
    result: T | None = None
    error: BaseException | None = None


class GroupCommit(Generic[T]):
    """Runs each write in its own savepoint of a transaction shared with others.

    `transaction` opens a write transaction and commits it on exit;
    `is_duplicate` tells an IntegrityError that means "already stored" from
    others. A write that fails rolls back its own savepoint only.
    """

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[sqlite3.Connection]],
        is_duplicate: Callable[[sqlite3.IntegrityError], bool],
    ) -> None:
        self._transaction = transaction
        self._is_duplicate = is_duplicate
        self._queue: list[_Waiting[T]] = []
        self._queue_lock = threading.Lock()
        # Held by the thread committing a group; the others queue meanwhile.
        self._turn = threading.Lock()

    def run(self, write: Callable[[sqlite3.Connection], T]) -> T | None:
        """Run `write`, return once it is committed; None if a duplicate.

        Raises what the write or the commit raised.
        """
        mine: _Waiting[T] = _Waiting(write)
        with self._queue_lock:
            self._queue.append(mine)

        # Whoever holds the turn commits everything queued so far; if that
        # did not include this write, the next turn may be this thread's.
        while not mine.done:
            with self._turn:
                if not mine.done:
                    with self._queue_lock:
                        group, self._queue = self._queue, []
                    self._commit(group)

        if mine.error is not None:
            raise mine.error
        return None if mine.duplicate else mine.result

    def _commit(self, group: list[_Waiting[T]]) -> None:
        try:
            with self._transaction() as conn:
                for waiting in group:
                    self._one(conn, waiting)
        except Exception as exc:  # handed to every writer of the group
            # The transaction is rolled back: nothing of the group is stored.
            for waiting in group:
                waiting.error, waiting.duplicate = exc, False
        finally:
            for waiting in group:
                waiting.done = True

    def _one(self, conn: sqlite3.Connection, waiting: _Waiting[T]) -> None:
        conn.execute("SAVEPOINT one_write")
        try:
            waiting.result = waiting.write(conn)
        except Exception as exc:  # handed to its writer; the group goes on
            conn.execute("ROLLBACK TO one_write")
            waiting.duplicate = isinstance(
                exc, sqlite3.IntegrityError
            ) and self._is_duplicate(exc)
            if not waiting.duplicate:
                waiting.error = exc
        conn.execute("RELEASE one_write")
