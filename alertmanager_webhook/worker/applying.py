"""The applying of one action: its plan, the limits' gate, the actuator, retries.

A queued action is planned, then recorded as a dry run's preview, left for a
person's approval or applied. One that must not run twice is marked in the
start journal (start_journal.py) as it begins; a failed attempt is retried
after a delay that doubles each time, up to the policy's `retries`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from sqlite3 import Row
from typing import Any

from alertmanager_webhook.actuators.base import Actuator, ActuatorError
from alertmanager_webhook.admissions import Admissions, Admitted
from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.limits import Limits
from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.recommend import Recommender
from alertmanager_webhook.store_errors import StoreError
from alertmanager_webhook.worker.parts import Part, Shared

log = logging.getLogger(__name__)

# A failed action's next attempt waits this long, doubled per attempt.
RETRY_BASE_SECONDS = 5.0


@dataclass(frozen=True)
class _Attempt:
    """An action on its way to being applied, with what applying it needs."""

    row: Row
    policy: PolicyConfig
    actuator: Actuator
    target: str
    spec: Mapping[str, Any]
    # Where the action goes back to if a failed attempt is retried.
    before: str


class Applier(Part):
    """Plans an action and applies it within the limits, holding its target."""

    def __init__(
        self,
        shared: Shared,
        config: WebhookConfig,
        recommender: Recommender,
        admissions: Admissions,
    ) -> None:
        super().__init__(shared)
        self._recommender = recommender
        self._admissions = admissions
        # The limit checks and the admission are one step, so that two
        # threads cannot both pass a cap that has room for one.
        self._admitting = threading.Lock()
        self._limits = Limits(config, shared.jobs, shared.clock)

    def plan(self, row: Row) -> None:
        """Plan a queued action, then record, preview or apply it by its mode."""
        policy = self._policies.get(row["policy"])
        actuator = self._actuators.get(row["action"])
        if policy is None or actuator is None:
            missing = "policy" if policy is None else "action"
            self._results.finish(
                row, "failed", reason=f"{missing} no longer configured"
            )
            return
        if self._jobs.restore_queued(row["alert_fingerprint"], row["alert_starts_at"]):
            self._results.finish(
                row, "skipped", reason="the alert resolved before it ran"
            )
            return

        labels = json.loads(row["labels"])
        params, note = self._recommender.params(policy, labels)
        plan = actuator.plan(labels, policy, params)
        text = f"{plan.text} ({note})" if note else plan.text

        if plan.result != "planned":
            self._results.finish(row, plan.result, target=plan.target, plan=text)
        elif row["mode"] == "dry-run":
            self._preview(row, policy, plan.target, text, plan.spec)
        elif row["mode"] == "approve":
            self._results.finish(
                row, "pending", target=plan.target, plan=text, spec=plan.spec
            )
        else:
            planned = {"target": plan.target, "plan": text, "spec": dict(plan.spec)}
            self.apply(row, plan.target, plan.spec, planned)

    def _preview(
        self,
        row: Row,
        policy: PolicyConfig,
        target: str,
        text: str,
        spec: Mapping[str, Any],
    ) -> None:
        """Record a dry run's plan, saying whether apply's limits would hold it back.

        A plan apply would have run carries the time it would have started
        it, so that the next plans' previews count it (jobs.py); the limits
        of real changes never do.
        """
        fields: dict[str, Any] = {"target": target, "plan": text, "spec": spec}
        # Written under the lock, as an admission is made: two threads must
        # not both find room for one more.
        with self._admitting, self._admissions.unmarked() as unmarked:
            under_way = [a.target for a in unmarked]
            held = self._limits.holding(row, policy, target, under_way, preview=True)
            if held is None:
                fields["started_unix"] = self._clock()
                fields["reason"] = (
                    "apply would run it: no cooldown, cap or blast radius holds it back"
                )
            else:
                fields["reason"] = f"apply would skip it: {held.reason}"
            recorded = self._results.finish(row, "planned", **fields)
        if recorded and held is not None:
            self._metrics.dry_run_held_back.labels(row["action"], held.limit).inc()

    def apply(
        self,
        row: Row,
        target: str,
        spec: Mapping[str, Any],
        planned: Mapping[str, Any] | None = None,
    ) -> None:
        """Gate, mark running, apply; `planned` is the plan to record on the way."""
        policy = self._policies[row["policy"]]
        actuator = self._actuators[row["action"]]
        before = row["result"] if row["result"] == "approved" else "queued"
        planned = planned or {}

        attempt = _Attempt(row, policy, actuator, target, spec, before)
        with self._claims.holding(target, row):
            self._gated_apply(attempt, planned)

    def _gated_apply(self, attempt: _Attempt, planned: Mapping[str, Any]) -> None:
        row, policy = attempt.row, attempt.policy
        with self._admitting, self._admissions.unmarked() as unmarked:
            under_way = [a.target for a in unmarked]
            held = self._limits.holding(row, policy, attempt.target, under_way)
            if held is not None:
                self._results.finish(
                    row, "skipped", (attempt.before,), reason=held.reason, **planned
                )
                return
            # Written with the action's end, or its mark as running if it
            # runs long (admissions.py).
            admitted = self._admissions.admit(
                row["id"],
                attempt.target,
                attempt.before,
                {
                    "started_unix": self._clock(),
                    "attempts": row["attempts"] + 1,
                    **planned,
                },
            )

        # An action that must not run twice says when it began, so that a
        # crash before that point runs it again (start_journal.py). Its mark
        # is spent once its end is recorded; a failure to record it leaves the
        # mark, and the action unsettled, for the next start to settle.
        watched = not (attempt.actuator.idempotent or policy.idempotent)
        try:
            self._run(attempt, admitted, watched)
        except StoreError:
            # Its end is not written and its row may still say queued: never
            # taken again by this worker; the next start settles it.
            self._claims.mark_unsettled(row["id"])
            raise
        if watched:
            self._journal.settle(row["id"])

    def _run(self, attempt: _Attempt, admitted: Admitted, watched: bool) -> None:
        """Apply an admitted action and record how it ended."""
        row, spec = attempt.row, attempt.spec
        attempts = admitted.fields["attempts"]
        started = self._clock()
        try:
            if watched:
                plan = admitted.fields.get("plan", row["plan"])
                began = self._journal.mark(
                    row["id"],
                    attempt.target,
                    plan,
                    attempts,
                    admitted.fields["started_unix"],
                )
                outcome = attempt.actuator.apply(spec, began)
            else:
                outcome = attempt.actuator.apply(spec)
        except ActuatorError as exc:
            self._metrics.apply_duration.labels(row["action"]).observe(
                self._clock() - started
            )
            with self._admissions.ending(admitted) as (expect, first):
                if attempts > attempt.policy.retries:
                    self._results.finish(
                        row, "failed", expect, **first, reason=str(exc)
                    )
                    return
                delay = RETRY_BASE_SECONDS * 2 ** (attempts - 1)
                self._jobs.move(
                    row["id"],
                    expect,
                    **{
                        **first,
                        "result": attempt.before,
                        "not_before": self._clock() + delay,
                        "reason": f"attempt {attempts} failed: {exc}; "
                        f"retrying in {delay:g}s",
                    },
                )
            log.warning(
                "attempt failed id=%d action=%s attempt=%d reason=%r; retrying in %gs",
                row["id"],
                row["action"],
                attempts,
                str(exc),
                delay,
            )
            return

        self._metrics.apply_duration.labels(row["action"]).observe(
            self._clock() - started
        )
        with self._admissions.ending(admitted) as (expect, first):
            self._results.finish(
                row,
                "applied",
                expect,
                **first,
                reason=outcome.text,
                undo=None if outcome.undo is None else dict(outcome.undo),
            )
        log.info(
            "applied id=%d action=%s target=%r outcome=%r",
            row["id"],
            row["action"],
            attempt.target,
            outcome.text,
        )
