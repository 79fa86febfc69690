"""The detector loop: query, score, publish a Snapshot; needs a PrometheusClient.

The clock and the sleep are injected, so tests drive cycles and back-off
without waiting.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from detector.checkpoint import FILE_NAME, Checkpoint, CheckpointStatus
from detector.config import DetectorConfig, QueryConfig
from detector.entities import EntityGroup
from detector.family import Batch, Family, LabelKey, Track
from detector.health import PrometheusHealth, is_outage
from detector.model import Score
from detector.prometheus import PrometheusClient, PrometheusUnreachable, Series
from detector.shard import Shard, parse_shard
from detector.snapshot import FamilyState, SeriesState, Snapshot
from detector.store import ModelStore
from detector.training import background_executor

log = logging.getLogger(__name__)

# Called with every scored batch: query name, labels, timestamps, scores.
Observer = Callable[[str, dict[str, str], Sequence[float], Sequence[Score]], None]

# Retries while Prometheus is away: quick at first, then no faster than a minute.
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0

# Prometheus' default lookback: a series silent for longer has also vanished from
# its instant queries, so its last score is not shown as current any more.
EXPORT_STALENESS_SECONDS = 300.0


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
        self._client = client
        self._clock = clock
        self._sleep = sleep
        # Work that reads this cycle's snapshot: diagnosis, the optimizer.
        self._after_cycle = after_cycle
        self._observer = observer

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
        self._other_shards: dict[str, int] = {q.name: 0 for q in config.queries}
        self._cursor: dict[str, float] = {}
        self._health = PrometheusHealth(config)
        self._dropped = 0
        self._scored = 0
        self._last_success = 0.0
        self._cap_warned = False

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
                self._run_query(query, started)
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

        self._score_entities()
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

    def _run_query(self, query: QueryConfig, now: float) -> None:
        step = query.step_seconds
        history = self._config.history_seconds
        # Every bound is a multiple of the step, so consecutive cycles ask for
        # the same grid and a point is never scored twice under two timestamps.
        end = math.floor((now - self._config.query_delay_seconds) / step) * step
        earliest = end - math.floor(history / step) * step
        cursor = self._cursor.get(query.name)
        start = earliest if cursor is None else max(cursor + step, earliest)
        if start > end:
            return

        results = self._client.query_range(query.promql, start, end, step)
        family = self._families[query.name]
        batches: list[tuple[Series, Batch]] = []
        others = 0
        for series in results:
            if not self._shard.owns(series.labels):
                others += 1
                continue
            batch = self._batch(family, series)
            if batch is not None:
                batches.append((series, batch))
        self._other_shards[query.name] = others

        family.score([b for _, b in batches])
        recent_after = end - max(self._config.interval_seconds, step)
        for series, batch in batches:
            self._record(query.name, series, batch, recent_after)
        self._cursor[query.name] = end
        family.maybe_retrain(end)

        tracks = family.tracks
        gone = [k for k, t in tracks.items() if end - t.last_timestamp > history]
        for key in gone:
            del tracks[key]
        if gone:
            log.debug("forgot series query=%s count=%d", query.name, len(gone))

    def _batch(self, family: Family, series: Series) -> Batch | None:
        if not series.points:
            return None

        key = tuple(sorted(series.labels.items()))
        track = family.tracks.get(key)
        if track is None:
            track = self._new_track(family, key)
            if track is None:
                return None

        # Prometheus returns a series' points in time order and chunks arrive in
        # order, so the fresh points are a suffix; the filter guards overlaps.
        fresh = [(t, v) for t, v in series.points if t > track.last_timestamp]
        if not fresh:
            return None
        points = np.array(fresh, dtype=float)
        return Batch(track, points[:, 0], points[:, 1])

    def _record(
        self, query: str, series: Series, batch: Batch, recent_after: float
    ) -> None:
        track, scores = batch.track, batch.scores
        timestamps = batch.timestamps.tolist()
        track.last_timestamp = timestamps[-1]
        track.latest = _most_anomalous_recent(timestamps, scores, recent_after)
        self._scored += len(scores)
        for group in self._groups:
            group.collect(query, series.labels, timestamps, scores)
        if self._observer is not None:
            self._observer(query, series.labels, timestamps, scores)

    def _score_entities(self) -> None:
        for group in self._groups:
            cursors = [self._cursor.get(q, -math.inf) for q in group.members]
            end = max(cursors)
            recent_after = end - self._config.interval_seconds
            for result in group.score():
                result.entity.latest = _most_anomalous_recent(
                    result.timestamps, result.scores, recent_after
                )
                self._scored += len(result.scores)
                if self._observer is not None:
                    self._observer(
                        group.name, result.labels, result.timestamps, result.scores
                    )
            if math.isfinite(end):
                group.maybe_retrain(end)
                group.forget(end - self._config.history_seconds)

    def _tracked(self) -> int:
        return sum(len(f.tracks) for f in self._families.values())

    def _new_track(self, family: Family, key: LabelKey) -> Track | None:
        if self._tracked() >= self._config.max_series:
            self._dropped += 1
            if not self._cap_warned:
                log.warning(
                    "series cap reached max_series=%d; new series are not scored",
                    self._config.max_series,
                )
                self._cap_warned = True
            return None

        track = family.new_track(key)
        log.debug("new series query=%s labels=%s", family.name, dict(key))
        return track

    def _publish(self, duration: float) -> None:
        series = []
        for query in self._config.queries:
            cursor = self._cursor.get(query.name, -math.inf)
            fresh_after = cursor - max(EXPORT_STALENESS_SECONDS, query.step_seconds)
            series.extend(
                SeriesState(
                    query.name,
                    key,
                    track.last_timestamp,
                    track.latest,
                    track.model.points_seen,
                )
                for key, track in self._families[query.name].tracks.items()
                if track.latest is not None and track.last_timestamp >= fresh_after
            )
        for group in self._groups:
            fresh_after = self._cursor.get(group.members[0], -math.inf) - max(
                EXPORT_STALENESS_SECONDS, self._config.interval_seconds
            )
            series.extend(
                SeriesState(
                    group.name,
                    tuple(sorted(entity.labels.items())),
                    entity.last_timestamp,
                    entity.latest,
                    entity.history.shape[0],
                )
                for entity in group.entities.values()
                if entity.latest is not None and entity.last_timestamp >= fresh_after
            )

        families = tuple(
            FamilyState(
                name,
                "forecaster",
                family.schedule.last_trained,
                family.schedule.failures,
            )
            for name, family in self._families.items()
            if family.schedule is not None
        ) + tuple(
            FamilyState(
                group.name,
                group.config.method,
                group.schedule.last_trained,
                group.schedule.failures,
            )
            for group in self._groups
        )

        self.snapshot = Snapshot(
            series=tuple(series),
            query_errors=dict(self._health.errors),
            prometheus_up=bool(self._health.up),
            cycle_duration_seconds=duration,
            last_success_timestamp_seconds=self._last_success,
            series_tracked=self._tracked(),
            series_dropped_total=self._dropped,
            points_scored_total=self._scored,
            series_other_shards=sum(self._other_shards.values()),
            shard_index=self._shard.index,
            shard_count=self._shard.count,
            families=families,
        )


def _most_anomalous_recent(
    timestamps: Sequence[float], scores: Sequence[Score], recent_after: float
) -> Score:
    """The point a cycle exports: the highest score among the last interval's.

    With one point per cycle (step = interval, as deployed) that is the newest
    point. When a cycle scores several points of the last interval (a finer
    step, or a replay), a scrape must not miss an anomalous one in between;
    older points (the warm-up history) never count, so no alert fires on them.
    """
    recent = [s for t, s in zip(timestamps, scores, strict=True) if t > recent_after]
    if not recent:
        return scores[-1]
    return max(recent, key=lambda s: (s.decision, _finite_or_zero(s.score)))


def _finite_or_zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0
