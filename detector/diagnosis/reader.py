"""The diagnosis' two reads through one range-query function: a range over an
incident window, and the latest value of each series at one instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from detector.diagnosis.rootcause import Window


class SeriesLike(Protocol):
    """What the query function returns per series: labels and (t, v) points."""

    labels: Mapping[str, str]
    points: Sequence[tuple[float, float]]


# query_range(promql, start, end, step): PrometheusClient.query_range's shape.
QueryRange = Callable[[str, float, float, float], Sequence[SeriesLike]]


class Reader:
    """Asks `query_range` on the diagnosis' step grid."""

    def __init__(self, query_range: QueryRange, step_seconds: float) -> None:
        self._query = query_range
        self._step = step_seconds

    def range(self, query: str, window: Window) -> Sequence[SeriesLike]:
        step = self._step
        start = math.floor(window.baseline_start / step) * step
        return self._query(query, start, window.end, step)

    def instant(
        self, query: str, now: float
    ) -> dict[tuple[tuple[str, str], ...], float]:
        values = {}
        for series in self._query(query, now, now, self._step):
            if series.points:
                values[tuple(sorted(series.labels.items()))] = series.points[-1][1]
        return values
