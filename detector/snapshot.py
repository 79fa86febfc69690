"""The detector's state as one immutable value, handed from the loop to scrapes.

The loop builds a new Snapshot after every cycle and swaps the reference; a
scrape reads whichever one is current and never waits on a query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from detector.model import Score


@dataclass(frozen=True, slots=True)
class SeriesState:
    """The latest scored point of one source series."""

    query: str
    labels: tuple[tuple[str, str], ...]
    timestamp: float
    score: Score
    points_seen: int = 0


@dataclass(frozen=True, slots=True)
class FamilyState:
    """A model shared by the series of one query or entity group."""

    family: str
    model: str
    trained_timestamp: float | None
    training_failures: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything /metrics shows, as of the end of one cycle."""

    series: tuple[SeriesState, ...] = ()
    query_errors: Mapping[str, int] = field(default_factory=dict)
    prometheus_up: bool = False
    cycle_duration_seconds: float = 0.0
    last_success_timestamp_seconds: float = 0.0
    series_tracked: int = 0
    series_dropped_total: int = 0
    points_scored_total: int = 0
    series_other_shards: int = 0
    shard_index: int = 0
    shard_count: int = 1
    families: tuple[FamilyState, ...] = ()
