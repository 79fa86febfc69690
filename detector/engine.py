"""The detector loop: query, score, publish a Snapshot; needs a PrometheusClient.

The clock and the sleep are injected, so tests drive cycles and back-off
without waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from detector.checkpoint import FILE_NAME, Checkpoint, CheckpointStatus
from detector.config import DetectorConfig
from detector.entities import EntityGroup
from detector.family import Family
from detector.health import PrometheusHealth, is_outage
from detector.prometheus import PrometheusClient, PrometheusUnreachable
from detector.scorer import Observer, Scorer
from detector.shard import Shard, parse_shard
from detector.snapshot import Snapshot
from detector.states import family_states, series_states
from detector.store import ModelStore
from detector.training import background_executor

log = logging.getLogger(__name__)

# Retries while Prometheus is away: quick at first, then no faster than a minute.
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0


class Engine:
    """Keeps one model per series and scores new points once per cycle."""

    def __init__(
        self,
        config: DetectorConfig,
        client: PrometheusClient,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
        observer: Observer | None = None,
        executor: Executor | None = None,
        after_cycle: Callable[[], object] | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._sleep = sleep
        # Work that reads this cycle's snapshot: diagnosis, the optimizer.
        self._after_cycle = after_cycle

        store = ModelStore(Path(config.state_dir)) if config.state_dir else None
        executor = executor or background_executor()
        self._families = {
            q.name: Family(q, config.model_for(q), executor, store)
            for q in config.queries
        }
        self._groups = [
            EntityGroup(e, config.model, executor, store) for e in config.entities
        ]
        index, count = parse_shard(config.shard)
        self._shard = Shard(index, count, config.shard_by)
        self._cursor: dict[str, float] = {}
        self._scorer = Scorer(
            config,
            client,
            self._families,
            self._groups,
            self._cursor,
            self._shard,
            observer,
        )
        self._health = PrometheusHealth(config)
        self._last_success = 0.0

        self._checkpoint: Checkpoint | None = None
        self._unsaved = False
        self._saving = False
        if store is not None:
            self._checkpoint = Checkpoint(store.root / FILE_NAME, config, clock)
            # Restored cursors make the first query ask only for the gap.
            self._checkpoint.restore(
                self._families, self._groups, self._cursor, self._shard.owns
            )

        # Replaced whole, never mutated: a scrape in another thread reads it
        # without a lock because rebinding an attribute is atomic.
        self.snapshot = Snapshot(query_errors=dict(self._health.errors))

    def run(self, stop: threading.Event) -> None:
        """Run cycles until `stop` is set, backing off while Prometheus is away."""
        sleep = self._sleep or stop.wait
        failures = 0
        log.info("detector loop started queries=%d", len(self._config.queries))

        while not stop.is_set():
            started = self._clock()
            try:
                up = self.run_cycle()
            except Exception:  # loop boundary: log and keep serving
                log.exception("detector cycle failed")
                # A fault of ours, not of Prometheus: retrying sooner won't help.
                up = True

            if self._after_cycle is not None:
                try:
                    self._after_cycle()
                except Exception:  # loop boundary: scoring goes on without it
                    log.exception("work after the detector cycle failed")

            if up:
                failures = 0
                elapsed = self._clock() - started
                delay = max(0.0, self._config.interval_seconds - elapsed)
            else:
                failures += 1
                exponent = min(failures - 1, 16)
                delay = min(BACKOFF_INITIAL_SECONDS * 2**exponent, BACKOFF_MAX_SECONDS)
            sleep(delay)

        log.info("detector loop stopped")
        if self._unsaved:
            self.save_checkpoint()

    @property
    def checkpoint_status(self) -> CheckpointStatus:
        if self._checkpoint is None:
            return CheckpointStatus()
        return self._checkpoint.status

    @property
    def saving(self) -> bool:
        """True while a checkpoint is being written."""
        return self._saving

    def save_checkpoint(self) -> None:
        """Write every series' model to state_dir; a no-op without one."""
        if self._checkpoint is None:
            return
        self._saving = True
        try:
            self._checkpoint.save(self._families, self._groups, self._cursor)
        finally:
            self._saving = False
        self._unsaved = False

    def run_cycle(self) -> bool:
        """Run every query once; return False when Prometheus could not be used."""
        started = self._clock()
        answered = False
        down: Exception | None = None
        failed = 0

        for query in self._config.queries:
            try:
                self._scorer.score_query(query, started)
            except Exception as exc:  # loop boundary: one query's fault stays there
                self._health.query_failed(query, exc)
                failed += 1
                if not is_outage(exc):
                    # Prometheus answered; the fault is this query's alone.
                    answered = True
                    continue
                down = exc
                # With no connection at all, the other queries would only wait.
                if isinstance(exc, PrometheusUnreachable):
                    break
            else:
                self._health.query_ok(query)
                answered = True

        self._scorer.score_entities()
        self._unsaved = True

        up = down is None or answered
        self._health.set_up(up, down)
        if failed == 0:
            self._last_success = self._clock()

        self._publish(duration=max(0.0, self._clock() - started))

        if self._checkpoint is not None and self._checkpoint.due(self._clock()):
            # Between cycles, in the loop's thread: no model changes mid-write.
            self.save_checkpoint()
        return up

    def _publish(self, duration: float) -> None:
        self.snapshot = Snapshot(
            series=series_states(
                self._config, self._families, self._groups, self._cursor
            ),
            query_errors=dict(self._health.errors),
            prometheus_up=bool(self._health.up),
            cycle_duration_seconds=duration,
            last_success_timestamp_seconds=self._last_success,
            series_tracked=self._scorer.tracked(),
            series_dropped_total=self._scorer.dropped,
            points_scored_total=self._scorer.scored,
            series_other_shards=sum(self._scorer.other_shards.values()),
            shard_index=self._shard.index,
            shard_count=self._shard.count,
            families=family_states(self._families, self._groups),
        )
