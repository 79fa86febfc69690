"""The background worker: plans, gates and applies queued actions, and restores.

A few threads (`workers` in the config) take actions in arrival order. No two
actions of one alert episode, nor two changes to one target, run at once
(claims.py). An action is marked running in the database before its actuator
is called (applying.py), so after a crash it is never run twice: an idempotent
one is queued again, any other is recorded as failed with its outcome unknown
(recovery.py). Restores on resolve are in restores.py; every part records an
action's end through results.py.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from sqlite3 import Row

from alertmanager_webhook.actuators.base import Actuator
from alertmanager_webhook.admissions import Admissions
from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.forwarded_metrics import ForwardedMetrics
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.recommend import Recommender
from alertmanager_webhook.start_journal import StartJournal
from alertmanager_webhook.store_errors import StoreError
from alertmanager_webhook.worker.applying import Applier
from alertmanager_webhook.worker.claims import Claims, TargetHeld
from alertmanager_webhook.worker.parts import Shared
from alertmanager_webhook.worker.recovery import Recovery
from alertmanager_webhook.worker.restores import Restorer
from alertmanager_webhook.worker.results import Results

log = logging.getLogger(__name__)

# How often the queue depth is published while a backlog is worked off.
DEPTH_EVERY_SECONDS = 0.5


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
        self._jobs = jobs
        self._metrics = metrics
        self._clock = clock
        self._poll = poll_seconds
        self._checkpoint_every = checkpoint_seconds
        self._checkpointed = 0.0
        self._published = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

        # As SQLite opened it: absolute, whatever the config said.
        database = jobs.store.file()
        self._journal = StartJournal.beside(
            database, fsync=config.database_sync == "full"
        )
        self._admissions = Admissions(
            self._jobs.move, marked=lambda: self._publish_depth(force=True)
        )

        # The parts share one view of what the threads hold, and one way of
        # recording where an action ended up.
        policies = {p.name: p for p in config.policies}
        self._claims = Claims()
        self._results = Results(jobs, metrics, clock, database)
        shared = Shared(
            self._journal,
            jobs,
            policies,
            actuators,
            metrics,
            clock,
            self._claims,
            self._results,
        )
        self._recovery = Recovery(shared)
        self._applier = Applier(
            shared, config, recommender or Recommender(), self._admissions
        )
        self._restorer = Restorer(shared)

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
                self._applier.apply(row, row["target"], json.loads(row["spec"]))
            else:
                self._applier.plan(row)
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
