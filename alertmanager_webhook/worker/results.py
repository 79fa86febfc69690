"""Records where an action ended up and tells the operator what to act on.

The row moves through Jobs; what did not happen, a dry run's plan and an
action that waits for approval are logged; every result is counted.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from sqlite3 import Row
from typing import Any

from alertmanager_webhook.forwarded_metrics import ForwardedMetrics
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.operator_command import aiops_command

log = logging.getLogger(__name__)

# The operator command as a person can paste it into a shell.
AIOPS = aiops_command()


class Results:
    """Writes an action's result with its log line and its metrics."""

    def __init__(
        self,
        jobs: Jobs,
        metrics: WebhookMetrics | ForwardedMetrics,
        clock: Callable[[], float],
        database: str,
    ) -> None:
        self._jobs = jobs
        self._metrics = metrics
        self._clock = clock
        self._database = database

    def finish(
        self,
        row: Row,
        result: str,
        expect: tuple[str, ...] = ("queued",),
        **fields: Any,
    ) -> bool:
        """Record the action's result; False if it had moved on meanwhile."""
        now = self._clock()
        if result != "pending":
            fields["finished_unix"] = now
        if not self._jobs.move(row["id"], expect, result=result, **fields):
            return False
        if result in ("failed", "refused", "skipped"):
            # What did not happen, and why: the operator reads it here first.
            log.log(
                logging.WARNING if result == "failed" else logging.INFO,
                "%s %s id=%d action=%s reason=%r",
                row["kind"],
                result,
                row["id"],
                row["action"],
                fields.get("reason") or fields.get("plan", ""),
            )
        elif result in ("planned", "pending"):
            # What a person may want to act on: a dry run's plan and whether
            # apply would run it, or an action that waits for an approval.
            log.info(
                "%s %s id=%d action=%s plan=%r%s",
                row["kind"],
                "planned (dry-run)" if result == "planned" else "waits for approval",
                row["id"],
                row["action"],
                fields.get("plan", ""),
                self._approve_hint(row)
                if result == "pending"
                else f" reason={fields.get('reason', '')!r}",
            )
        if row["kind"] == "restore":
            self._metrics.restores.labels(row["action"], result).inc()
            return True
        self._metrics.actions.labels(row["action"], row["mode"], result).inc()
        if result != "pending":
            self._metrics.action_latency.labels(row["action"]).observe(
                max(0.0, now - row["received_unix"])
            )
        return True

    def _approve_hint(self, row: Row) -> str:
        # With the database's own path: from another folder, or beside another
        # receiver's database, a bare id would approve nothing, or another action.
        database = shlex.quote(self._database)
        return (
            f"; approve with: {shlex.quote(AIOPS)} approve {row['id']} "
            f"--database {database}"
        )
