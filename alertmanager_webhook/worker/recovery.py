"""Crash recovery: the actions a crash cut short are settled before new work.

A restore or an idempotent action, or one the start journal (start_journal.py)
says had not begun, is queued again; any other is recorded as failed with its
outcome unknown. A program of one that outlived the crash holds its target
until it ends (survivors.py).
"""

from __future__ import annotations

import logging
import threading
from sqlite3 import Row
from typing import Any

from alertmanager_webhook import survivors
from alertmanager_webhook.jobs import OUTCOME_UNKNOWN
from alertmanager_webhook.store_errors import StoreError
from alertmanager_webhook.worker.parts import Part, Shared

log = logging.getLogger(__name__)


class Recovery(Part):
    """Settles what a crash left running; `watches` are its survivors' threads."""

    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        # The watches of programs that outlived a crash (survivors.py).
        self.watches: list[threading.Thread] = []

    def recover(self) -> None:
        """Settle actions a crash left running, before any new work."""
        begun = self._journal.begun()
        running = self._jobs.running()
        held = set()
        for row in running:
            actuator = self._actuators.get(row["action"])
            policy = self._policies.get(row["policy"])
            again = row["kind"] == "restore" or (
                actuator is not None
                and (actuator.idempotent or (policy is not None and policy.idempotent))
            )
            if again:
                self._requeue(row, "interrupted by a restart; safe to run again")
            elif begun is not None and row["id"] not in begun:
                self._requeue(row, "interrupted by a restart before it began")
            elif self._interrupted(row, ("running",)):
                held.add(row["id"])
        for action_id in (begun or set()) - {row["id"] for row in running}:
            row = self._jobs.get(action_id)
            if row is None:
                continue
            if self._began_unrecorded(row):
                # Began while admitted, before any mark as running.
                if self._interrupted(row, ("queued", "approved")):
                    held.add(action_id)
            elif self._hold_for_survivor(row):
                # A program that outlived an earlier crash, settled then, or
                # an attempt whose failure was recorded, its retry to come.
                held.add(action_id)
        try:
            self._journal.open(keep=frozenset(held))
        except OSError as exc:
            raise StoreError(
                f"cannot open start journal {self._journal.path!r}: {exc}"
            ) from exc

    def _began_unrecorded(self, row: Row) -> bool:
        """Whether a queued or approved action's mark is of an unrecorded attempt.

        A crash between an attempt's recorded failure, retry to come, and the
        spending of its mark leaves the mark too: that attempt is over, and
        the retry is due as recorded. A mark that names no attempt (an older
        receiver's) cannot tell, and counts as begun.
        """
        if row["result"] not in ("queued", "approved"):
            return False
        attempt = self._journal.attempt(row["id"])
        return attempt is None or attempt > row["attempts"]

    def _interrupted(self, row: Row, expect: tuple[str, ...]) -> bool:
        """Record an action a crash cut short after it began; True if held.

        Its row may not yet say which target it changed, nor when it
        started: its mark does.
        """
        fields: dict[str, Any] = {}
        if "running" not in expect:
            # Cut short before its row said anything of this attempt: its
            # start is its program's, not an earlier attempt's.
            fields["attempts"] = row["attempts"] + 1
            target, plan = self._journal.named(row["id"])
            fields.update({"target": target, "plan": plan} if target else {})
            # It counts toward the cooldown and the blast radius (jobs.py)
            # from when it began. A mark that does not say when (an older
            # receiver's) counts from the restart: later than it began, so
            # it never leaves a window early.
            began = self._journal.began_at(row["id"])
            fields["started_unix"] = self._clock() if began is None else began
        self._results.finish(
            row,
            "failed",
            expect,
            reason=f"{OUTCOME_UNKNOWN}, not run again because the action is "
            "not idempotent",
            **fields,
        )
        log.warning(
            "interrupted action not run again id=%d action=%s target=%r; "
            "check whether it took effect",
            row["id"],
            row["action"],
            fields.get("target", row["target"]),
        )
        return self._hold_for_survivor(self._jobs.get(row["id"]) or row)

    def _hold_for_survivor(self, row: Row) -> bool:
        """Keep the target of a program that outlived a crash until it ends.

        Its mark stays until then, so that a crash meanwhile finds it again.
        False when no program of the action still runs.
        """
        program = self._journal.program(row["id"])
        target = row["target"]
        if program is None or not target:
            return False
        policy = self._policies.get(row["policy"])
        timeout = policy.timeout_seconds if policy is not None else 0.0
        left = (row["started_unix"] or 0.0) + timeout - self._clock()
        # Only a record of unknown outcome is final, and told how the program
        # ended: an action whose retry is to come is still on its way.
        final = row["result"] == "failed" and row["reason"].startswith(OUTCOME_UNKNOWN)

        def gone(killed: bool | None) -> None:
            if final and killed is not None:
                self._record_survivor_end(row, killed, timeout)
            self._journal.settle(row["id"])
            self._claims.let_target_go(target)

        self._claims.keep_target(target)
        watching = survivors.watch(*program, left, gone)
        if watching is None:
            self._claims.drop_target(target)
            return False
        self.watches.append(watching)
        log.warning(
            "program of interrupted action still runs id=%d pid=%d target=%r; "
            "actions on the target wait until it ends, at its timeout in %.0fs "
            "at the latest",
            row["id"],
            program[0],
            target,
            max(0.0, left),
        )
        return True

    def _record_survivor_end(self, row: Row, killed: bool, timeout: float) -> None:
        """Add to the record of an action of unknown outcome how its program ended.

        Its outcome stays unknown, and the action counts as a change still:
        a program that ended by itself may have failed, and one killed at its
        timeout may have changed its target first. It is never run again.
        """
        started = row["started_unix"]
        ran = None if started is None else self._clock() - started
        ending = survivors.ending(killed, ran, timeout)
        try:
            self._jobs.move(row["id"], ("failed",), reason=f"{row['reason']}; {ending}")
        except Exception as exc:  # noqa: BLE001 (the write, local or through the pipe)
            # The survivor's thread is a boundary of its own: the target is
            # let go all the same; only this note is lost.
            self._metrics.worker_errors.labels("store").inc()
            log.error(
                "cannot record how an interrupted action's program ended id=%d err=%s",
                row["id"],
                exc,
            )
            return
        log.log(
            logging.WARNING if killed else logging.INFO,
            "program of interrupted action ended id=%d target=%r killed=%s; "
            "outcome still unknown",
            row["id"],
            row["target"],
            killed,
        )

    def _requeue(self, row: Row, reason: str) -> None:
        previous = "approved" if row["approved_by"] else "queued"
        self._jobs.move(row["id"], ("running",), result=previous, reason=reason)
        log.warning("requeued interrupted action id=%d reason=%r", row["id"], reason)
