"""The worker process's state changes, written by the server on its behalf.

The worker (worker_process.py) only reads the database; each move it makes
travels over a pipe to the server, which writes it in its group commits and
answers whether the action was still where the worker expected it.
"""

from __future__ import annotations

import threading
from multiprocessing.connection import Connection
from typing import Any

from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.store_errors import StoreError

# The columns a worker's move may set; the server writes no other.
MOVABLE = frozenset(
    {
        "result",
        "reason",
        "target",
        "plan",
        "spec",
        "undo",
        "attempts",
        "not_before",
        "started_unix",
        "finished_unix",
        "restored_at",
    }
)


class MoveClient:
    """The worker's side of a move: asks the server and waits for its answer."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        # One question at a time on the pipe, so that answers cannot cross.
        self._lock = threading.Lock()

    def __call__(
        self, action_id: int, expect: tuple[str, ...], fields: dict[str, Any]
    ) -> bool:
        with self._lock:
            self._conn.send((action_id, expect, fields))
            moved, error = self._conn.recv()
        if error:
            raise StoreError(error)
        return moved


def serve_moves(conn: Connection, jobs: Jobs) -> None:
    """Write the worker's moves until its pipe closes; answer each."""
    while True:
        try:
            action_id, expect, fields = conn.recv()
        except (EOFError, OSError):
            return
        try:
            unknown = set(fields) - MOVABLE
            if unknown:
                raise StoreError(f"the worker may not set {sorted(unknown)!r}")
            answer = (jobs.move(action_id, tuple(expect), **fields), "")
        except StoreError as exc:
            answer = (False, str(exc))
        conn.send(answer)
