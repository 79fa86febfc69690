"""Whether Prometheus and each detector query answer: failure counts by query,
and one log line per change of state rather than one per failed attempt.
"""

from __future__ import annotations

import logging

from detector.config import DetectorConfig, QueryConfig
from detector.prometheus import (
    PrometheusHTTPError,
    PrometheusUnreachable,
    QueryError,
    QueryTimeout,
)

log = logging.getLogger(__name__)


class PrometheusHealth:
    """Counts each query's failures and remembers whether Prometheus is up."""

    def __init__(self, config: DetectorConfig) -> None:
        self._prometheus_url = config.prometheus_url
        self.errors = {q.name: 0 for q in config.queries}
        # None until the first cycle has said either way.
        self.up: bool | None = None
        self._failing: set[str] = set()

    def query_failed(self, query: QueryConfig, exc: Exception) -> None:
        self.errors[query.name] += 1

        # An outage is logged once by set_up; a query's own fault once per run of
        # failures. The counter has every one.
        if is_outage(exc) or query.name in self._failing:
            log.debug("query failed query=%s error=%s", query.name, exc)
            return
        self._failing.add(query.name)
        if isinstance(exc, QueryError):
            log.warning("query failing query=%s error=%s", query.name, exc)
        else:
            log.error("query failing query=%s", query.name, exc_info=exc)

    def query_ok(self, query: QueryConfig) -> None:
        if query.name in self._failing:
            self._failing.discard(query.name)
            log.info("query recovered query=%s", query.name)

    def set_up(self, up: bool, reason: Exception | None) -> None:
        # One line per change of state, not per failed attempt.
        if up == self.up:
            return
        if up:
            log.info("prometheus reachable url=%s", self._prometheus_url)
        else:
            log.warning("prometheus unavailable, backing off error=%s", reason)
        self.up = up


def is_outage(exc: Exception) -> bool:
    """True when the server, not the query, failed: worth backing off for."""
    if isinstance(exc, PrometheusUnreachable | QueryTimeout):
        return True
    return isinstance(exc, PrometheusHTTPError) and exc.server_side
