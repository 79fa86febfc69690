"""One cycle's scoring: ask a PrometheusClient for each query's new points and
feed them to the models of their series and entity groups.

The families, groups and cursors are the engine's; the scorer updates them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np

from detector.config import DetectorConfig, QueryConfig
from detector.entities import EntityGroup
from detector.family import Batch, Family, LabelKey, Track
from detector.model import Score
from detector.prometheus import PrometheusClient, Series
from detector.shard import Shard

log = logging.getLogger(__name__)

# Called with every scored batch: query name, labels, timestamps, scores.
Observer = Callable[[str, dict[str, str], Sequence[float], Sequence[Score]], None]


class Scorer:
    """Scores new points per query and per entity group, counting what it does."""

    def __init__(
        self,
        config: DetectorConfig,
        client: PrometheusClient,
        families: dict[str, Family],
        groups: list[EntityGroup],
        cursor: dict[str, float],
        shard: Shard,
        observer: Observer | None = None,
    ) -> None:
        self._config = config
        self._client = client
        self._families = families
        self._groups = groups
        self._cursor = cursor
        self._shard = shard
        self._observer = observer
        self.other_shards: dict[str, int] = {q.name: 0 for q in config.queries}
        self.dropped = 0
        self.scored = 0
        self._cap_warned = False

    def score_query(self, query: QueryConfig, now: float) -> None:
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
        self.other_shards[query.name] = others

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

    def score_entities(self) -> None:
        for group in self._groups:
            cursors = [self._cursor.get(q, -math.inf) for q in group.members]
            end = max(cursors)
            recent_after = end - self._config.interval_seconds
            for result in group.score():
                result.entity.latest = _most_anomalous_recent(
                    result.timestamps, result.scores, recent_after
                )
                self.scored += len(result.scores)
                if self._observer is not None:
                    self._observer(
                        group.name, result.labels, result.timestamps, result.scores
                    )
            if math.isfinite(end):
                group.maybe_retrain(end)
                group.forget(end - self._config.history_seconds)

    def tracked(self) -> int:
        return sum(len(f.tracks) for f in self._families.values())

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
        self.scored += len(scores)
        for group in self._groups:
            group.collect(query, series.labels, timestamps, scores)
        if self._observer is not None:
            self._observer(query, series.labels, timestamps, scores)

    def _new_track(self, family: Family, key: LabelKey) -> Track | None:
        if self.tracked() >= self._config.max_series:
            self.dropped += 1
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
