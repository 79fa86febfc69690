"""The background worker: plans, gates and applies queued actions, and restores.

A few threads (`workers` in the config) take actions in arrival order. No two
actions of one alert episode, nor two changes to one target, run at once. An
action is marked running in the database before its actuator is called, so
after a crash it is never run twice: an idempotent one is queued again, any
other is recorded as failed with its outcome unknown.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from sqlite3 import Row
from typing import Any

from alertmanager_webhook.actuators.base import Actuator, ActuatorError
from alertmanager_webhook.admissions import Admissions, Admitted
from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.forwarded_metrics import ForwardedMetrics
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.limits import Limits
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.recommend import Recommender
from alertmanager_webhook.start_journal import StartJournal
from alertmanager_webhook.store import StoreError
from alertmanager_webhook.worker.claims import Claims, TargetHeld
from alertmanager_webhook.worker.recovery import Recovery
from alertmanager_webhook.worker.restores import Restorer
from alertmanager_webhook.worker.results import Results

log = logging.getLogger(__name__)

# A failed action's next attempt waits this long, doubled per attempt.
RETRY_BASE_SECONDS = 5.0
# How often the queue depth is published while a backlog is worked off.
DEPTH_EVERY_SECONDS = 0.5


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


class Worker:
    """Takes ready actions from the queue; `drain()` runs it inline for tests."""

    def __init__(
        self,
        config: WebhookConfig,
        jobs: Jobs,
        actuators: Mapping[str, Actuator],
        # In the worker's own process, updates relayed to the server's registry.
        metrics: WebhookMetrics | ForwardedMetrics,
        recommender: Recommender | None = None,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 1.0,
        checkpoint_seconds: float = 1.0,
    ) -> None:
        self._config = config
        # As SQLite opened it: absolute, whatever the config said.
        self._database = jobs.store.file()
        self._journal = StartJournal.beside(
            self._database, fsync=config.database_sync == "full"
        )
        self._policies = {p.name: p for p in config.policies}
        self._jobs = jobs
        self._actuators = actuators
        self._metrics = metrics
        self._recommender = recommender or Recommender()
        self._clock = clock
        self._results = Results(jobs, metrics, clock, self._database)
        self._claims = Claims()
        self._restorer = Restorer(
            jobs, actuators, metrics, clock, self._claims, self._results
        )
        self._recovery = Recovery(
            self._journal,
            jobs,
            self._policies,
            actuators,
            metrics,
            clock,
            self._claims,
            self._results,
        )
        self._poll = poll_seconds
        self._checkpoint_every = checkpoint_seconds
        self._checkpointed = 0.0
        self._published = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # The limit checks and the admission are one step, so that two
        # threads cannot both pass a cap that has room for one.
        self._admitting = threading.Lock()
        self._limits = Limits(config, jobs, clock)
        self._admissions = Admissions(
            self._jobs.move, marked=lambda: self._publish_depth(force=True)
        )

    def start(self) -> None:
        self.recover()
        self._admissions.start()
        self._threads = [
            threading.Thread(target=self._loop, name=f"actions-{i}", daemon=True)
            for i in range(self._config.workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.notify()
        # Programs that outlived a crash too: their watch is what kills them
        # at their timeout, which a stop must not skip.
        deadline = time.monotonic() + timeout
        for thread in [*self._threads, *self._recovery.watches]:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._admissions.stop()

    def notify(self) -> None:
        """Tell the worker that something was queued, approved or let go."""
        self._claims.notify()

    def recover(self) -> None:
        """Settle actions a crash left running, before any new work."""
        self._recovery.recover()

    def drain(self) -> int:
        """Process every ready action in this thread; return how many were taken.

        One set aside for a target held by a program that outlived a crash
        is waited for.
        """
        done = 0
        while True:
            while self._work_one():
                done += 1
            seen = self._claims.aside_generation()
            if seen is None or self._stop.is_set():
                return done
            self._wait_for_work(seen)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until a look at the queue found nothing ready and nothing in hand."""
        return self._claims.wait_idle(timeout)

    def _work_one(self) -> bool:
        """Take one ready action and process it; False when none is ready."""
        seen = self._claims.generation()
        row = self._take()
        if row is None:
            self._publish_depth(force=True)
            emptied = self._claims.found_nothing(seen)
            if emptied:
                self._metrics.worker_last_success.set(self._clock())
            return False

        try:
            self._process(row)
        except TargetHeld:
            pass  # set aside by holding(); taken again once its target is let go
        finally:
            self._claims.let_go(row["id"])
        return True

    def _take(self) -> Row | None:
        """Claim the oldest ready action whose alert episode no thread holds."""
        with self._claims.looking():
            self._checkpoint()
            # Published while a backlog is worked off, not only once it is gone.
            self._publish_depth()
            return self._claims.take(lambda room: self._jobs.ready(self._clock(), room))

    def _publish_depth(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._published < DEPTH_EVERY_SECONDS:
            return
        self._published = now
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
            seen = self._claims.generation()
            try:
                if self._work_one():
                    continue
            except StoreError as exc:
                # The loop boundary: count, log, and try again on the next round.
                self._metrics.worker_errors.labels("store").inc()
                log.error("queue unavailable err=%s", exc)
            self._wait_for_work(seen)

    def _wait_for_work(self, seen: int) -> None:
        """Sleep until notified, an action is let go, or the poll interval ends."""
        self._claims.wait_for_work(seen, self._poll, self._stop)

    def _process(self, row: Row) -> None:
        try:
            if row["kind"] == "restore":
                self._restorer.restore(row)
            elif row["result"] == "approved":
                self._apply(row, row["target"], json.loads(row["spec"]))
            else:
                self._plan(row)
        except (StoreError, TargetHeld):
            raise
        except Exception as exc:  # an actuator's bug must not stop the queue
            # The stage the action entered at: a queued one is planned first.
            if row["kind"] == "restore":
                stage = "restore"
            else:
                stage = "apply" if row["result"] == "approved" else "plan"
            self._metrics.worker_errors.labels(stage).inc()
            log.exception("action crashed id=%d action=%s", row["id"], row["action"])
            self._results.finish(
                row, "failed", ("queued", "approved", "running"), reason=repr(exc)
            )
            # Recorded as ended: a mark it may have left is spent too.
            self._admissions.forget(row["id"])
            self._journal.settle(row["id"])

    def _plan(self, row: Row) -> None:
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
            self._apply(row, plan.target, plan.spec, planned)

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
