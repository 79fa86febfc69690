"""Restores on resolve: what an applied action changed is undone.

A resolved alert queues a restore for each action of its episode (intake.py);
one still waiting by then is cancelled instead. The undo is the actuator's,
from what its apply recorded.
"""

from __future__ import annotations

import json
import logging
from sqlite3 import Row

from alertmanager_webhook.actuators.base import ActuatorError
from alertmanager_webhook.worker.parts import Part

log = logging.getLogger(__name__)


class Restorer(Part):
    """Runs a queued restore, holding the original action's target meanwhile."""

    def restore(self, row: Row) -> None:
        """Undo what the action `row` restores changed, or cancel it if it waits."""
        original = self._jobs.get(row["restores"])
        if original is None:
            self._results.finish(row, "failed", reason="the original action is gone")
            return

        with self._claims.holding(original["target"], row):
            # Read again: another change to the target may have finished meanwhile.
            self._restore_held(row, self._jobs.get(row["restores"]) or original)

    def _restore_held(self, row: Row, original: Row) -> None:
        if original["result"] in ("pending", "queued", "approved"):
            self._results.finish(
                original,
                "cancelled",
                ("pending", "queued", "approved"),
                reason="the alert resolved first",
            )
            self._results.finish(row, "skipped", reason="cancelled the waiting action")
            return
        if original["result"] != "applied" or not original["undo"]:
            self._results.finish(row, "skipped", reason="nothing to restore")
            return
        if original["restored_at"]:
            self._results.finish(row, "skipped", reason="already restored")
            return

        if not self._jobs.move(row["id"], ("queued",), result="running"):
            return
        actuator = self._actuators[original["action"]]
        started = self._clock()
        try:
            text = actuator.restore(json.loads(original["undo"]))
        except ActuatorError as exc:
            self._results.finish(row, "failed", ("running",), reason=str(exc))
            return
        finally:
            self._metrics.apply_duration.labels(row["action"]).observe(
                self._clock() - started
            )

        self._jobs.move(
            original["id"], ("applied",), restored_at=self._jobs.store.now().isoformat()
        )
        self._results.finish(
            row, "applied", ("running",), reason=text, target=original["target"]
        )
        log.info("restored id=%d action=%s", original["id"], original["action"])
