"""Fills a policy parameter from the detector's recommendation in Prometheus.

Needs Prometheus' HTTP API; when it is unreachable or has no answer, the
policy's static value is used and the plan says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import requests

from aiops_common.causes import host_port, short_cause
from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.templates import LabelError, fill_promql

log = logging.getLogger(__name__)


class Recommender:
    """Runs a policy's instant query and returns the parameters to act with."""

    def __init__(self, session: requests.Session | None = None) -> None:
        self._session = session or requests.Session()

    def params(
        self, policy: PolicyConfig, labels: Mapping[str, str]
    ) -> tuple[dict[str, float | str], str]:
        """Return the parameters and a note on where the recommended one came from."""
        params = dict(policy.params)
        rec = policy.recommend
        if rec is None:
            return params, ""

        static = f"static {rec.param} {params[rec.param]}"
        try:
            value = self._query(rec.prometheus_url, fill_promql(rec.query, labels), rec)
        except (LabelError, LookupError) as exc:
            return params, f"{static}, because {exc}"

        params[rec.param] = value
        return params, f"{rec.param} {value:g} recommended by Prometheus"

    def _query(self, url: str, query: str, rec) -> float:
        try:
            response = self._session.get(
                url.rstrip("/") + "/api/v1/query",
                params={"query": query},
                timeout=rec.timeout_seconds,
            )
            response.raise_for_status()
            result = response.json()["data"]["result"]
        except requests.RequestException as exc:
            why = short_cause(exc)
            log.warning("recommendation query failed url=%s err=%s", url, why)
            raise LookupError(
                f"Prometheus at {host_port(url)} did not answer: {why}"
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("recommendation query failed url=%s err=%r", url, exc)
            raise LookupError(
                f"Prometheus at {host_port(url)} sent no query result"
            ) from exc

        if len(result) != 1:
            raise LookupError(f"the query returned {len(result)} series, not 1")
        try:
            value = float(result[0]["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LookupError("the query returned no number") from exc
        if not math.isfinite(value) or value <= 0:
            raise LookupError(f"the recommendation {value!r} is not above 0")
        return value
