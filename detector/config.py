"""The detector's settings as frozen dataclasses, read by aiops_common.config.

Every check names the key it refuses, so a bad file stops the service at start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiops_common.address import parse_listen_address
from aiops_common.config import check
from aiops_common.logs import LEVELS

ENV_PREFIX = "AIOPS_DETECTOR_"

# The query name becomes a label value and a log key; keeping it to a metric-name
# alphabet means it never needs quoting anywhere.
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class QueryConfig:
    """One PromQL selection whose every series gets its own model."""

    name: str
    promql: str
    step_seconds: float = 15.0

    def __post_init__(self) -> None:
        check(
            _NAME.fullmatch(self.name) is not None,
            "name",
            f"must match [a-zA-Z_][a-zA-Z0-9_]*, got {self.name!r}",
        )
        check(bool(self.promql.strip()), "promql", "must not be empty")
        check(
            self.step_seconds > 0,
            "step_seconds",
            f"must be > 0, got {self.step_seconds!r}",
        )


@dataclass(frozen=True)
class ModelConfig:
    """The robust median/MAD model shared by every series."""

    window: int = 288
    min_points: int = 30
    threshold: float = 6.0

    def __post_init__(self) -> None:
        check(self.window >= 3, "window", f"must be >= 3, got {self.window!r}")
        check(
            1 <= self.min_points <= self.window,
            "min_points",
            f"must be between 1 and window ({self.window}), got {self.min_points!r}",
        )
        check(self.threshold > 0, "threshold", f"must be > 0, got {self.threshold!r}")


@dataclass(frozen=True)
class DetectorConfig:
    """Where to read, what to score, where to serve."""

    prometheus_url: str = "http://127.0.0.1:9090"
    listen_address: str = "127.0.0.1:9843"
    interval_seconds: float = 15.0
    query_delay_seconds: float = 30.0
    history_seconds: float = 3600.0
    query_timeout_seconds: float = 10.0
    max_series: int = 10000
    log_level: str = "info"
    queries: tuple[QueryConfig, ...] = ()
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        check(
            self.prometheus_url.startswith(("http://", "https://")),
            "prometheus_url",
            f"must start with http:// or https://, got {self.prometheus_url!r}",
        )
        try:
            parse_listen_address(self.listen_address)
        except ValueError as exc:
            check(False, "listen_address", str(exc))

        for key, low, strict in (
            ("interval_seconds", 0, True),
            ("query_delay_seconds", 0, False),
            ("history_seconds", 0, True),
            ("query_timeout_seconds", 0, True),
            ("max_series", 1, False),
        ):
            value = getattr(self, key)
            ok = value > low if strict else value >= low
            check(ok, key, f"must be {'>' if strict else '>='} {low}, got {value!r}")

        check(
            self.log_level in LEVELS,
            "log_level",
            f"must be one of {', '.join(LEVELS)}, got {self.log_level!r}",
        )

        # A detector with nothing to watch is a deployment mistake, not a mode.
        check(bool(self.queries), "queries", "at least one query is required")
        names = [q.name for q in self.queries]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        check(
            not duplicates,
            "queries",
            f"duplicate query name {', '.join(map(repr, duplicates))}",
        )
