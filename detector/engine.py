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
from dataclasses import dataclass

from detector.config import DetectorConfig, QueryConfig
from detector.model import RobustModel, Score
from detector.prometheus import (
    PrometheusClient,
    PrometheusHTTPError,
    PrometheusUnreachable,
    QueryError,
    QueryTimeout,
    Series,
)
from detector.snapshot import SeriesState, Snapshot

log = logging.getLogger(__name__)

LabelKey = tuple[tuple[str, str], ...]

# Called with every scored batch: query name, labels, timestamps, scores.
Observer = Callable[[str, dict[str, str], Sequence[float], Sequence[Score]], None]

# Retries while Prometheus is away: quick at first, then no faster than a minute.
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0

# Prometheus' default lookback: a series silent for longer has also vanished from
# its instant queries, so its last score is not shown as current any more.
EXPORT_STALENESS_SECONDS = 300.0


@dataclass
class _Track:
    """One source series: its model and how far it has been scored."""

    model: RobustModel
    last_timestamp: float = -math.inf
    latest: Score | None = None


class Engine:
    """Keeps one model per series and scores new points once per cycle."""

    def __init__(
        self,
        config: DetectorConfig,
        client: PrometheusClient,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._config = config
        self._client = client
        self._clock = clock
        self._sleep = sleep
        self._observer = observer

        self._tracks: dict[str, dict[LabelKey, _Track]] = {
            q.name: {} for q in config.queries
        }
        self._cursor: dict[str, float] = {}
        self._errors = {q.name: 0 for q in config.queries}
        self._dropped = 0
        self._scored = 0
        self._up: bool | None = None
        self._last_success = 0.0
        self._cap_warned = False
        self._failing: set[str] = set()

        # Replaced whole, never mutated: a scrape in another thread reads it
        # without a lock because rebinding an attribute is atomic.
        self.snapshot = Snapshot(query_errors=dict(self._errors))

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
                self._query_failed(query, exc)
                failed += 1
                if not _is_outage(exc):
                    # Prometheus answered; the fault is this query's alone.
                    answered = True
                    continue
                down = exc
                # With no connection at all, the other queries would only wait.
                if isinstance(exc, PrometheusUnreachable):
                    break
            else:
                self._query_ok(query)
                answered = True

        up = down is None or answered
        self._set_up(up, down)
        if failed == 0:
            self._last_success = self._clock()

        self._publish(duration=max(0.0, self._clock() - started))
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
        tracks = self._tracks[query.name]
        recent_after = end - max(self._config.interval_seconds, step)
        for series in results:
            self._feed(query.name, tracks, series, recent_after)
        self._cursor[query.name] = end

        gone = [k for k, t in tracks.items() if end - t.last_timestamp > history]
        for key in gone:
            del tracks[key]
        if gone:
            log.debug("forgot series query=%s count=%d", query.name, len(gone))

    def _feed(
        self,
        query: str,
        tracks: dict[LabelKey, _Track],
        series: Series,
        recent_after: float,
    ) -> None:
        if not series.points:
            return

        key = tuple(sorted(series.labels.items()))
        track = tracks.get(key)
        if track is None:
            track = self._new_track(query, tracks, key)
            if track is None:
                return

        # Prometheus returns a series' points in time order and chunks arrive in
        # order, so the fresh points are a suffix; the filter guards overlaps.
        fresh = [(t, v) for t, v in series.points if t > track.last_timestamp]
        if not fresh:
            return
        timestamps = [t for t, _ in fresh]
        scores = track.model.update([v for _, v in fresh])

        track.last_timestamp = timestamps[-1]
        track.latest = _most_anomalous_recent(timestamps, scores, recent_after)
        self._scored += len(scores)
        if self._observer is not None:
            self._observer(query, series.labels, timestamps, scores)

    def _new_track(
        self, query: str, tracks: dict[LabelKey, _Track], key: LabelKey
    ) -> _Track | None:
        tracked = sum(len(t) for t in self._tracks.values())
        if tracked >= self._config.max_series:
            self._dropped += 1
            if not self._cap_warned:
                log.warning(
                    "series cap reached max_series=%d; new series are not scored",
                    self._config.max_series,
                )
                self._cap_warned = True
            return None

        model = self._config.model
        track = _Track(RobustModel(model.window, model.min_points, model.threshold))
        tracks[key] = track
        log.debug("new series query=%s labels=%s", query, dict(key))
        return track

    def _query_failed(self, query: QueryConfig, exc: Exception) -> None:
        self._errors[query.name] += 1

        # An outage is logged once by _set_up; a query's own fault once per run of
        # failures. The counter has every one.
        if _is_outage(exc) or query.name in self._failing:
            log.debug("query failed query=%s error=%s", query.name, exc)
            return
        self._failing.add(query.name)
        if isinstance(exc, QueryError):
            log.warning("query failing query=%s error=%s", query.name, exc)
        else:
            log.error("query failing query=%s", query.name, exc_info=exc)

    def _query_ok(self, query: QueryConfig) -> None:
        if query.name in self._failing:
            self._failing.discard(query.name)
            log.info("query recovered query=%s", query.name)

    def _set_up(self, up: bool, reason: Exception | None) -> None:
        # One line per change of state, not per failed attempt.
        if up == self._up:
            return
        if up:
            log.info("prometheus reachable url=%s", self._config.prometheus_url)
        else:
            log.warning("prometheus unavailable, backing off error=%s", reason)
        self._up = up

    def _publish(self, duration: float) -> None:
        series = []
        for query in self._config.queries:
            cursor = self._cursor.get(query.name, -math.inf)
            fresh_after = cursor - max(EXPORT_STALENESS_SECONDS, query.step_seconds)
            series.extend(
                SeriesState(query.name, key, track.last_timestamp, track.latest)
                for key, track in self._tracks[query.name].items()
                if track.latest is not None and track.last_timestamp >= fresh_after
            )

        self.snapshot = Snapshot(
            series=tuple(series),
            query_errors=dict(self._errors),
            prometheus_up=bool(self._up),
            cycle_duration_seconds=duration,
            last_success_timestamp_seconds=self._last_success,
            series_tracked=sum(len(t) for t in self._tracks.values()),
            series_dropped_total=self._dropped,
            points_scored_total=self._scored,
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


def _is_outage(exc: Exception) -> bool:
    """True when the server, not the query, failed: worth backing off for."""
    if isinstance(exc, PrometheusUnreachable | QueryTimeout):
        return True
    return isinstance(exc, PrometheusHTTPError) and exc.server_side
