"""The optimizer's range queries: what each cycle reads from Prometheus.

Needs a range-query function (detector.prometheus.PrometheusClient.query_range).
A resource's usage is read on from where the last cycle stopped, a limit from
the last few steps, GPUs' draw over the power window. Also says what a failed
query means for the rest of the cycle and where to look.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from detector.optimizer.config import PowerConfig, ResourceQuery
from detector.optimizer.readings import Readings, gather, identity
from detector.optimizer.snapshot import LabelPairs
from detector.prometheus import (
    PrometheusHTTPError,
    PrometheusUnreachable,
    QueryError,
    QueryTimeout,
    Series,
)

QueryRange = Callable[[str, float, float, float], list[Series]]

# A limit is read from the last few steps, so one missed scrape does not lose it.
LIMIT_LOOKBACK_STEPS = 5

# The last value of each limit series, by identity.
Limits = dict[LabelPairs, float]


class PowerReadings(NamedTuple):
    """Each GPU's draw over the window, its limit and the range NVML allows."""

    draws: Readings
    limits: Limits
    lows: Limits
    highs: Limits


class Queries:
    """Runs the optimizer's queries; keeps where each resource's usage stopped."""

    def __init__(self, query_range: QueryRange, history_seconds: float) -> None:
        self._query = query_range
        self._history_seconds = history_seconds
        self._cursor: dict[str, float] = {}

    def resource(self, rq: ResourceQuery, now: float) -> tuple[list[Series], Limits]:
        """New readings of `rq`, and the allocations in force.

        The first call reads the whole history, each later one what came since.
        """
        step = rq.step_seconds
        end = math.floor(now / step) * step
        cursor = self._cursor.get(rq.resource)
        start = end - math.floor(self._history_seconds / step) * step
        if cursor is not None:
            start = max(cursor + step, start)

        fresh = start <= end
        usage = self._query(rq.usage, start, end, step) if fresh else []
        allocations = self.limits(rq.allocation, rq.labels, now, step)
        # Moved only once both have answered, so that a cycle that lost its
        # allocations reads the same steps again next time.
        if fresh:
            self._cursor[rq.resource] = end
        return usage, allocations

    def limits(
        self, promql: str, labels: tuple[str, ...], now: float, step: float
    ) -> Limits:
        """The last value of each series of `promql`; none without a query."""
        if not promql:
            return {}
        end = math.floor(now / step) * step
        start = end - LIMIT_LOOKBACK_STEPS * step
        values: Limits = {}
        for s in self._query(promql, start, end, step):
            if s.points:
                # As usage is: the largest of series its labels do not tell apart.
                key = identity(s.labels, labels)
                values[key] = max(values.get(key, -math.inf), s.points[-1][1])
        return values

    def power(self, config: PowerConfig, now: float) -> PowerReadings:
        """Every input of GPU power advice, as of `now`."""
        step = config.step_seconds
        end = math.floor(now / step) * step
        start = end - math.floor(config.window_seconds / step) * step
        return PowerReadings(
            limits=self.limits(config.limit, config.labels, now, step),
            lows=self.limits(config.min_limit, config.labels, now, step),
            highs=self.limits(config.max_limit, config.labels, now, step),
            draws=gather(
                self._query(config.draw, start, end, step),
                config.labels,
                None,
                "watts",
            ),
        )


def is_away(exc: QueryError) -> bool:
    """True when Prometheus did not answer: the next query would wait as long."""
    return isinstance(exc, PrometheusUnreachable | QueryTimeout)


def what_to_check(exc: QueryError) -> str:
    """Where to look next after a query failed with `exc`."""
    if isinstance(exc, PrometheusUnreachable):
        return "check that Prometheus is up at prometheus_url"
    if isinstance(exc, QueryTimeout):
        return "check Prometheus' load, or raise query_timeout_seconds"
    if isinstance(exc, PrometheusHTTPError) and exc.server_side:
        return "check Prometheus' own log"
    if isinstance(exc, PrometheusHTTPError):
        return "check the query's PromQL in the optimizer's config"
    return "check that prometheus_url points at Prometheus' HTTP API"
