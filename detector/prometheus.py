"""A small client for Prometheus' range-query API; needs a requests.Session.

Errors form a small tree, so callers can tell a server that is away from a
query that is wrong:

    QueryError
    ├── PrometheusUnreachable   no connection: refused, reset, connect timeout
    ├── QueryTimeout            connected, but no whole answer within the timeout
    ├── PrometheusHTTPError     an answer with an error status; carries `status`
    └── BadResponse             an answer that is not Prometheus' JSON
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import requests
import urllib3

from aiops_common.causes import innermost
from aiops_common.once import Once
from detector.deadline import DeadlineAdapter, held_to

log = logging.getLogger(__name__)

# Prometheus refuses a range query that would return more than 11,000 points per
# series; 10,000 leaves room for the end point and float rounding of the bounds.
MAX_STEPS_PER_QUERY = 10_000
# The longest history a service asks for: six times what Prometheus keeps by
# default (15 days). A slip of the exponent (1e308 s) would otherwise be cut
# into more requests than memory holds before the first one is sent.
MAX_HISTORY_SECONDS = 90 * 86400.0

# Large enough that a big answer takes few reads.
READ_CHUNK_BYTES = 64 * 1024

# The (query, warning) pairs remembered as logged, so that a standing warning
# is logged once rather than every cycle; one forgotten is logged again.
WARNINGS_REMEMBERED = 256


class QueryError(Exception):
    """A range query that did not give a usable result."""


class PrometheusUnreachable(QueryError):
    """No connection to the server: refused, reset, name not found, timed out."""


class QueryTimeout(QueryError):
    """The server took the query but did not answer in time: a heavy query."""


class PrometheusHTTPError(QueryError):
    """Prometheus answered with an error status and, usually, its own message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message

    @property
    def server_side(self) -> bool:
        """True for 5xx: the server is failing, not the query."""
        return self.status >= 500


class BadResponse(QueryError):
    """The answer was not the JSON shape that Prometheus' API documents."""


class Series(NamedTuple):
    """One series of a matrix result: its labels (no __name__) and its points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


def merge_series(answers: Iterable[Series]) -> list[Series]:
    """Series with the same labels as one, their points in the order given.

    Chunks of one range come in time order, so each series' points stay in
    order; two series with the same labels in one answer do not.
    """
    merged: dict[tuple[tuple[str, str], ...], Series] = {}
    for series in answers:
        key = tuple(sorted(series.labels.items()))
        if key in merged:
            merged[key].points.extend(series.points)
        else:
            merged[key] = series
    return list(merged.values())


class PrometheusClient:
    """Runs range queries against one Prometheus (or anything speaking its API).

    Each HTTP request, one per chunk of a long range, must be answered whole
    within `timeout` seconds of being sent, or it ends in QueryTimeout. To hold
    it to that, the client mounts an adapter of its own on `session` for its
    query URL.
    """

    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # rstrip keeps a route prefix such as http://host/prometheus working.
        self._url = base_url.rstrip("/") + "/api/v1/query_range"
        self._session = session
        session.mount(self._url, DeadlineAdapter())
        self._timeout = timeout
        self._clock = clock
        self._warned = Once(WARNINGS_REMEMBERED)

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[Series]:
        """Evaluate `promql` at start, start+step, ... <= end, in chunks if long.

        Points whose value is NaN or infinite are dropped. A series' points come
        back in time order, merged across chunks.
        """
        if end < start:
            return []

        return merge_series(
            series
            for chunk_start, chunk_end in _chunks(start, end, step)
            for series in self._query_chunk(promql, chunk_start, chunk_end, step)
        )

    def _query_chunk(
        self, promql: str, start: float, end: float, step: float
    ) -> list[Series]:
        # POST keeps long PromQL out of the URL, where proxies cut it short.
        form = {
            "query": promql,
            "start": _fmt(start),
            "end": _fmt(end),
            "step": _fmt(step),
        }
        # requests' timeout bounds each socket read, not the whole answer: an
        # answer sent a byte at a time would hold the query, and the loop that
        # asked, for as long as the server likes. held_to cuts every read,
        # status line and headers included, to what is left of the deadline.
        deadline = self._clock() + self._timeout
        try:
            with (
                held_to(lambda: deadline - self._clock()),
                self._session.post(
                    self._url, data=form, timeout=self._timeout, stream=True
                ) as response,
            ):
                content = self._read_body(response)
        except (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError) as exc:
            raise QueryTimeout(f"{self._url}: no answer in {self._timeout}s") from exc
        except urllib3.exceptions.DecodeError as exc:
            raise BadResponse(f"{self._url}: cannot decode answer: {exc}") from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise PrometheusUnreachable(f"{self._url}: {innermost(exc)}") from exc

        body = _json_or_none(content)
        if response.status_code != 200 or (body or {}).get("status") == "error":
            message = (body or {}).get("error") or response.reason or "no message"
            raise PrometheusHTTPError(response.status_code, str(message))
        if body is None:
            raise BadResponse(f"{self._url}: answer is not JSON")

        # A standing warning (a limit, a lookback) is news once, not each cycle.
        for warning in body.get("warnings") or ():
            first = self._warned.first((promql, str(warning)))
            level = logging.WARNING if first else logging.DEBUG
            log.log(level, "prometheus warned query=%r warning=%r", promql, warning)

        return _parse_matrix(body)

    def _read_body(self, response: requests.Response) -> bytes:
        # Each read keeps to the deadline that _query_chunk holds the answer to.
        parts = []
        try:
            while part := response.raw.read1(READ_CHUNK_BYTES, decode_content=True):
                parts.append(part)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise QueryTimeout(
                f"{self._url}: answer not complete in {self._timeout}s"
            ) from exc
        return b"".join(parts)


def _chunks(start: float, end: float, step: float) -> list[tuple[float, float]]:
    # Bounds come from start + i*step rather than a running sum, so that rounding
    # does not drift across chunks and no point is asked for twice.
    count = math.floor((end - start) / step + 1e-9) + 1
    return [
        (
            start + first * step,
            start + (min(first + MAX_STEPS_PER_QUERY, count) - 1) * step,
        )
        for first in range(0, count, MAX_STEPS_PER_QUERY)
    ]


def _fmt(seconds: float) -> str:
    # repr keeps every digit of a float; Prometheus parses it as seconds.
    return repr(float(seconds))


def _json_or_none(content: bytes) -> dict[str, Any] | None:
    # json.loads finds the UTF encoding from the bytes, as response.json() did.
    try:
        body = json.loads(content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _parse_matrix(body: dict[str, Any]) -> list[Series]:
    try:
        data = body["data"]
        if data["resultType"] != "matrix":
            raise BadResponse(f"expected a matrix result, got {data['resultType']!r}")
        return [_parse_series(item) for item in data["result"]]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BadResponse(f"malformed matrix result: {exc!r}") from exc


def _parse_series(item: dict[str, Any]) -> Series:
    labels = {k: str(v) for k, v in item["metric"].items() if k != "__name__"}

    points = []
    # Native-histogram samples come under "histograms"; a float model skips them.
    for timestamp, text in item.get("values") or ():
        value = float(text)
        if math.isfinite(value):
            points.append((float(timestamp), value))

    return Series(labels, points)
