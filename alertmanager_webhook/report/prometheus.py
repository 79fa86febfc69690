"""Range queries for fault reports; needs Prometheus' HTTP API (or a compatible one).

A report is built on request, so a Prometheus that is down only leaves the
report's plot out; the report says so instead of failing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class RangeSeries:
    labels: dict[str, str]
    points: list[tuple[float, float]]


class RangeQuery:
    """Callable as `query_range(promql, start, end, step)` -> list of series."""

    def __init__(
        self, url: str, session: requests.Session | None = None, timeout: float = 10.0
    ) -> None:
        self._url = url.rstrip("/") + "/api/v1/query_range"
        self._session = session or requests.Session()
        self._timeout = timeout

    def __call__(
        self, promql: str, start: float, end: float, step: float
    ) -> list[RangeSeries]:
        try:
            with self._session.post(
                self._url,
                data={"query": promql, "start": start, "end": end, "step": step},
                timeout=self._timeout,
            ) as response:
                response.raise_for_status()
                result = response.json()["data"]["result"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise LookupError(
                f"Prometheus range query {promql!r} failed: {exc}"
            ) from exc

        series = []
        for item in result:
            labels = {k: v for k, v in item["metric"].items() if k != "__name__"}
            points = [(float(t), float(v)) for t, v in item["values"]]
            series.append(
                RangeSeries(labels, [p for p in points if math.isfinite(p[1])])
            )
        return series
