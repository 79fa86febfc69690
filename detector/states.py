"""What a Snapshot shows of the engine's models: the latest score of each series
still fresh, and the training schedule of each shared model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from detector.config import DetectorConfig
from detector.entities import EntityGroup
from detector.family import Family
from detector.snapshot import FamilyState, SeriesState

# Prometheus' default lookback: a series silent for longer has also vanished from
# its instant queries, so its last score is not shown as current any more.
EXPORT_STALENESS_SECONDS = 300.0


def series_states(
    config: DetectorConfig,
    families: Mapping[str, Family],
    groups: Sequence[EntityGroup],
    cursor: Mapping[str, float],
) -> tuple[SeriesState, ...]:
    """The latest point of every series and entity scored recently enough."""
    series = []
    for query in config.queries:
        fresh_after = cursor.get(query.name, -math.inf) - max(
            EXPORT_STALENESS_SECONDS, query.step_seconds
        )
        series.extend(
            SeriesState(
                query.name,
                key,
                track.last_timestamp,
                track.latest,
                track.model.points_seen,
            )
            for key, track in families[query.name].tracks.items()
            if track.latest is not None and track.last_timestamp >= fresh_after
        )
    for group in groups:
        fresh_after = cursor.get(group.members[0], -math.inf) - max(
            EXPORT_STALENESS_SECONDS, config.interval_seconds
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
    return tuple(series)


def family_states(
    families: Mapping[str, Family], groups: Sequence[EntityGroup]
) -> tuple[FamilyState, ...]:
    """The training schedule of every forecaster and entity group model."""
    return tuple(
        FamilyState(
            name,
            "forecaster",
            family.schedule.last_trained,
            family.schedule.failures,
        )
        for name, family in families.items()
        if family.schedule is not None
    ) + tuple(
        FamilyState(
            group.name,
            group.config.method,
            group.schedule.last_trained,
            group.schedule.failures,
        )
        for group in groups
    )
