"""The background worker: plans, gates and applies queued actions, and restores.

One thread works the queue in arrival order. An action is marked running in
the database before its actuator is called, so after a crash it is never run
twice: an idempotent one is queued again, any other is recorded as failed
with its outcome unknown.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from sqlite3 import Row
from typing import Any

from alertmanager_webhook.actuators.base import Actuator, ActuatorError
from alertmanager_webhook.config import PolicyConfig, WebhookConfig
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.recommend import Recommender
from alertmanager_webhook.store import StoreError

log = logging.getLogger(__name__)

# A failed action's next attempt waits this long, doubled per attempt.
RETRY_BASE_SECONDS = 5.0
# The longest an action waits for notifications in flight to be answered.
YIELD_SECONDS = 0.05


class Worker:
    """Takes ready actions from the queue; `drain()` runs it inline for tests."""

    # TODO: one thread applies every action, so a slow command (up to its
    # policy's timeout) holds up the queue behind it. Applying on a small pool,
    # one action per target at a time, would fix it; the limits already count
    # running actions, so they would hold across the pool.

    def __init__(
        self,
        config: WebhookConfig,
        jobs: Jobs,
        actuators: Mapping[str, Actuator],
        metrics: WebhookMetrics,
        recommender: Recommender | None = None,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 1.0,
        checkpoint_seconds: float = 1.0,
    ) -> None:
        self._config = config
        self._policies = {p.name: p for p in config.policies}
        self._jobs = jobs
        self._actuators = actuators
        self._metrics = metrics
        self._recommender = recommender or Recommender()
        self._clock = clock
        self._poll = poll_seconds
        self._checkpoint_every = checkpoint_seconds
        self._checkpointed = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="actions", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self) -> None:
        """Tell the worker that something was queued or approved."""
        self._wake.set()

    def recover(self) -> None:
        """Settle actions a crash left running, before any new work."""
        for row in self._jobs.running():
            actuator = self._actuators.get(row["action"])
            policy = self._policies.get(row["policy"])
            again = row["kind"] == "restore" or (
                actuator is not None
                and (actuator.idempotent or (policy is not None and policy.idempotent))
            )
            if again:
                previous = "approved" if row["approved_by"] else "queued"
                self._jobs.move(
                    row["id"],
                    ("running",),
                    result=previous,
                    reason="interrupted by a restart; safe to run again",
                )
                log.warning("requeued interrupted action id=%d", row["id"])
            else:
                self._finish(
                    row,
                    "failed",
                    ("running",),
                    reason="interrupted by a restart; outcome unknown, not run "
                    "again because the action is not idempotent",
                )

    def drain(self) -> int:
        """Process every ready action; return how many were taken."""
        done = 0
        while True:
            self._checkpoint()
            # Published per batch, so that a backlog shows while it is worked off.
            self._publish_depth()
            rows = self._jobs.ready(self._clock())
            if not rows:
                break
            for row in rows:
                # Actions wait; a notification waiting behind them would be
                # answered late and resent.
                self._jobs.store.gate.let_requests_pass(YIELD_SECONDS)
                self._process(row)
                done += 1
        self._metrics.worker_last_success.set(self._clock())
        return done

    def _publish_depth(self) -> None:
        for state, count in self._jobs.depth().items():
            self._metrics.queue_depth.labels(state).set(count)

    def _checkpoint(self) -> None:
        # Here rather than in the commits of requests, which it would slow down.
        now = time.monotonic()
        if now - self._checkpointed >= self._checkpoint_every:
            self._jobs.store.checkpoint()
            self._checkpointed = now

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain()
            except StoreError as exc:
                # The loop boundary: count, log, and try again on the next round.
                self._metrics.worker_errors.labels("store").inc()
                log.error("queue unavailable err=%s", exc)
            self._wake.wait(self._poll)
            self._wake.clear()

    def _process(self, row: Row) -> None:
        try:
            if row["kind"] == "restore":
                self._restore(row)
            elif row["result"] == "approved":
                self._apply(row, row["target"], json.loads(row["spec"]))
            else:
                self._plan(row)
        except StoreError:
            raise
        except Exception as exc:  # an actuator's bug must not stop the queue
            # The stage the action entered at: a queued one is planned first.
            if row["kind"] == "restore":
                stage = "restore"
            else:
                stage = "apply" if row["result"] == "approved" else "plan"
            self._metrics.worker_errors.labels(stage).inc()
            log.exception("action crashed id=%d action=%s", row["id"], row["action"])
            self._finish(
                row, "failed", ("queued", "approved", "running"), reason=repr(exc)
            )

    def _plan(self, row: Row) -> None:
        policy = self._policies.get(row["policy"])
        actuator = self._actuators.get(row["action"])
        if policy is None or actuator is None:
            missing = "policy" if policy is None else "action"
            self._finish(row, "failed", reason=f"{missing} no longer configured")
            return
        if self._jobs.restore_queued(row["alert_fingerprint"], row["alert_starts_at"]):
            self._finish(row, "skipped", reason="the alert resolved before it ran")
            return

        labels = json.loads(row["labels"])
        params, note = self._recommender.params(policy, labels)
        plan = actuator.plan(labels, policy, params)
        text = f"{plan.text} ({note})" if note else plan.text

        if plan.result != "planned":
            self._finish(row, plan.result, target=plan.target, plan=text)
        elif row["mode"] == "dry-run":
            self._finish(row, "planned", target=plan.target, plan=text, spec=plan.spec)
        elif row["mode"] == "approve":
            self._finish(row, "pending", target=plan.target, plan=text, spec=plan.spec)
        else:
            planned = {"target": plan.target, "plan": text, "spec": dict(plan.spec)}
            self._apply(row, plan.target, plan.spec, planned)

    def _apply(
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

        refusal = self._limit(row, policy, target)
        if refusal:
            self._finish(row, "skipped", (before,), reason=refusal, **planned)
            return

        now = self._clock()
        attempts = row["attempts"] + 1
        if not self._jobs.move(
            row["id"],
            (before,),
            result="running",
            started_unix=now,
            attempts=attempts,
            **planned,
        ):
            return

        try:
            outcome = actuator.apply(spec)
        except ActuatorError as exc:
            self._metrics.apply_duration.labels(row["action"]).observe(
                self._clock() - now
            )
            if attempts <= policy.retries:
                delay = RETRY_BASE_SECONDS * 2 ** (attempts - 1)
                self._jobs.move(
                    row["id"],
                    ("running",),
                    result=before,
                    not_before=self._clock() + delay,
                    reason=f"attempt {attempts} failed: {exc}; retrying in {delay:g}s",
                )
                return
            self._finish(row, "failed", ("running",), reason=str(exc))
            return

        self._metrics.apply_duration.labels(row["action"]).observe(self._clock() - now)
        self._finish(
            row,
            "applied",
            ("running",),
            reason=outcome.text,
            undo=None if outcome.undo is None else dict(outcome.undo),
        )
        log.info("applied id=%d action=%s target=%r", row["id"], row["action"], target)

    def _limit(self, row: Row, policy: PolicyConfig, target: str) -> str:
        """Say why the cooldown, the cap or the blast radius holds this back."""
        now = self._clock()
        last = self._jobs.last_change(row["action"], target, row["id"])
        if last is not None and now - last < policy.cooldown_seconds:
            return (
                f"cooldown: {target} was changed {now - last:.0f}s ago, "
                f"cooldown {policy.cooldown_seconds:g}s"
            )

        active = self._jobs.in_force()
        if active >= self._config.max_active_actions:
            return (
                f"cap: {active} changes in force, at most "
                f"{self._config.max_active_actions}"
            )

        window = self._config.blast_radius_window_seconds
        most = self._config.blast_radius_targets
        since = now - window
        if not self._jobs.changed_since(target, since):
            changed = self._jobs.count_targets_since(since, most)
            if changed >= most:
                return (
                    f"blast radius: {changed} targets changed in the last "
                    f"{window:g}s, at most {most}"
                )
        return ""

    def _restore(self, row: Row) -> None:
        original = self._jobs.get(row["restores"])
        if original is None:
            self._finish(row, "failed", reason="the original action is gone")
            return

        if original["result"] in ("pending", "queued", "approved"):
            self._finish(
                original,
                "cancelled",
                ("pending", "queued", "approved"),
                reason="the alert resolved first",
            )
            self._finish(row, "skipped", reason="cancelled the waiting action")
            return
        if original["result"] != "applied" or not original["undo"]:
            self._finish(row, "skipped", reason="nothing to restore")
            return
        if original["restored_at"]:
            self._finish(row, "skipped", reason="already restored")
            return

        if not self._jobs.move(row["id"], ("queued",), result="running"):
            return
        actuator = self._actuators[original["action"]]
        started = self._clock()
        try:
            text = actuator.restore(json.loads(original["undo"]))
        except ActuatorError as exc:
            self._finish(row, "failed", ("running",), reason=str(exc))
            return
        finally:
            self._metrics.apply_duration.labels(row["action"]).observe(
                self._clock() - started
            )

        self._jobs.move(
            original["id"], ("applied",), restored_at=self._jobs.store.now().isoformat()
        )
        self._finish(
            row, "applied", ("running",), reason=text, target=original["target"]
        )
        log.info("restored id=%d action=%s", original["id"], original["action"])

    def _finish(
        self,
        row: Row,
        result: str,
        expect: tuple[str, ...] = ("queued",),
        **fields: Any,
    ) -> None:
        now = self._clock()
        if result != "pending":
            fields["finished_unix"] = now
        if not self._jobs.move(row["id"], expect, result=result, **fields):
            return
        if row["kind"] == "restore":
            self._metrics.restores.labels(row["action"], result).inc()
            return
        self._metrics.actions.labels(row["action"], row["mode"], result).inc()
        if result != "pending":
            self._metrics.action_latency.labels(row["action"]).observe(
                max(0.0, now - row["received_unix"])
            )
