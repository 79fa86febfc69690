"""The action queue as the worker and approvers see it: state changes and counts.

Every change is a conditional UPDATE (it names the state it expects), written
with its audit record in one transaction, so that two writers, or a worker
and an approver in another process, never move one action twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from alertmanager_webhook.store import Store

# What the reason of an action a crash interrupted after it began starts with
# (worker/recovery.py): whether it changed its target is not known.
OUTCOME_UNKNOWN = "interrupted by a restart; outcome unknown"
# Changes to a limit: what the cooldown and the blast radius count. An action
# of unknown outcome counts as if it had changed its target: they are safety
# limits, and it may well have. (The prefix holds no LIKE wildcard.)
CHANGING = (
    "(result IN ('running', 'applied')"
    f" OR (result = 'failed' AND reason LIKE '{OUTCOME_UNKNOWN}%'))"
)
# What a dry run's preview of the limits counts too: its plans that apply
# would have run, which carry the time apply would have started them
# (worker/applying.py). No limit of a real change counts them.
WOULD_CHANGE = f"({CHANGING} OR (result = 'planned' AND started_unix IS NOT NULL))"


def _changes(preview: bool) -> str:
    return WOULD_CHANGE if preview else CHANGING


class ApprovalError(Exception):
    """An approval that cannot be given; `code` is the HTTP status to answer."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# Moves an action for a worker in another process: (id, expect, fields) -> moved.
RemoteMove = Callable[[int, tuple[str, ...], dict[str, Any]], bool]


class Jobs:
    """Reads and moves actions through their states.

    Each move joins the store's next group commit, which it shares with the
    notifications being stored. With `remote_move`, moves are written by
    another process (the server's, for the worker's process in
    worker_process.py) and this one only reads.
    """

    def __init__(self, store: Store, remote_move: RemoteMove | None = None) -> None:
        self.store = store
        self._remote_move = remote_move

    def ready(self, now: float, limit: int = 50) -> list[sqlite3.Row]:
        return self.store.query(
            "SELECT * FROM actions WHERE result IN ('queued', 'approved')"
            " AND not_before <= ? ORDER BY id LIMIT ?",
            [now, limit],
        )

    def get(self, action_id: int) -> sqlite3.Row | None:
        rows = self.store.query("SELECT * FROM actions WHERE id = ?", [action_id])
        return rows[0] if rows else None

    def running(self) -> list[sqlite3.Row]:
        return self.store.query("SELECT * FROM actions WHERE result = 'running'")

    def move(self, action_id: int, expect: tuple[str, ...], **fields: Any) -> bool:
        """Set `fields` if the action is in one of `expect`; False if it was not."""
        if self._remote_move is not None:
            return self._remote_move(action_id, expect, fields)

        for name in ("spec", "undo"):
            if name in fields and fields[name] is not None:
                fields[name] = json.dumps(fields[name], sort_keys=True)
        fields["updated_at"] = self.store.now().isoformat()

        return bool(
            self.store.grouped(
                lambda conn: self._move_in(conn, action_id, expect, fields)
            )
        )

    def _move_in(
        self,
        conn: sqlite3.Connection,
        action_id: int,
        expect: tuple[str, ...],
        fields: dict[str, Any],
    ) -> bool:
        names = ", ".join(f"{k} = ?" for k in fields)
        marks = ", ".join("?" for _ in expect)
        cursor = conn.execute(
            f"UPDATE actions SET {names} WHERE id = ? AND result IN ({marks})",
            [*fields.values(), action_id, *expect],
        )
        if not cursor.rowcount:
            return False
        self.store.append_action_audit(conn, action_id)
        return True

    def approve(self, action_id: int, approver: str) -> None:
        """Let a pending action run; ApprovalError says what stands in the way."""
        if not self.move(
            action_id, ("pending",), result="approved", approved_by=approver
        ):
            row = self.get(action_id)
            if row is None:
                raise ApprovalError(f"no action {action_id}", 404)
            raise ApprovalError(
                f"action {action_id} is {row['result']}, not pending approval", 409
            )

    def last_change(
        self, action: str, target: str, exclude: int, preview: bool = False
    ) -> float | None:
        rows = self.store.query(
            "SELECT max(started_unix) FROM actions WHERE kind = 'act' AND action = ?"
            f" AND target = ? AND id != ? AND {_changes(preview)}",
            [action, target, exclude],
        )
        return rows[0][0]

    def in_force(self) -> int:
        """Changes that hold now: applied, undoable and not yet restored, or running."""
        # Two counts rather than one OR, so that each can use its index; in
        # one statement, so that an action moving from running to applied
        # between them is not counted twice. Left to itself the planner reads
        # every applied action through actions_by_result, a cost that grows
        # with the history; the partial index holds only those in force.
        rows = self.store.query(
            "SELECT (SELECT count(*) FROM actions WHERE result = 'running'"
            " AND kind = 'act') + (SELECT count(*) FROM actions"
            " INDEXED BY actions_held WHERE result = 'applied' AND kind = 'act'"
            " AND undo IS NOT NULL AND restored_at IS NULL)"
        )
        return rows[0][0]

    def changed_since(self, target: str, since: float, preview: bool = False) -> bool:
        rows = self.store.query(
            "SELECT 1 FROM actions WHERE kind = 'act' AND target = ?"
            f" AND {_changes(preview)} AND started_unix >= ? LIMIT 1",
            [target, since],
        )
        return bool(rows)

    def targets_reach(self, since: float, most: int, preview: bool = False) -> bool:
        """Whether `most` distinct targets were changed since `since`."""
        # Fewer actions started in the window than `most` cannot have changed
        # `most` targets. Their count reads the start-time index alone; the
        # targets need each action's row, which a cap set high (to be out of
        # the way) made every action pay for every start in the window.
        started = self.store.query(
            "SELECT count(*) FROM (SELECT 1 FROM actions INDEXED BY actions_by_start"
            " WHERE started_unix >= ? LIMIT ?)",
            [since, most],
        )
        if started[0][0] < most:
            return False
        return self._count_targets_since(since, most, preview) >= most

    def _count_targets_since(
        self, since: float, enough: int, preview: bool = False
    ) -> int:
        """Distinct targets changed since `since`, counted up to `enough`."""
        # Through the window's start times: by result it would read every
        # applied action ever recorded (see in_force).
        rows = self.store.query(
            "SELECT count(*) FROM (SELECT DISTINCT target FROM actions"
            " INDEXED BY actions_by_start WHERE started_unix >= ? AND kind = 'act'"
            f" AND {_changes(preview)} LIMIT ?)",
            [since, enough],
        )
        return rows[0][0]

    def restore_queued(self, fingerprint: str, starts_at: str) -> bool:
        """Tell whether the alert episode has resolved (a restore is recorded)."""
        return bool(
            self.store.query(
                "SELECT 1 FROM actions WHERE kind = 'restore'"
                " AND alert_fingerprint = ? AND alert_starts_at = ?",
                [fingerprint, starts_at],
            )
        )

    def depth(self) -> dict[str, int]:
        """How many actions wait, by state: queued, approved, pending, running."""
        rows = self.store.query(
            "SELECT result, count(*) FROM actions WHERE result IN"
            " ('queued', 'approved', 'pending', 'running') GROUP BY result"
        )
        counts = dict.fromkeys(("queued", "approved", "pending", "running"), 0)
        counts.update({row[0]: row[1] for row in rows})
        return counts
