"""The detector's settings as frozen dataclasses, read by aiops_common.config.

Every check names the key it refuses, so a bad file stops the service at start.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from aiops_common.address import parse_listen_address
from aiops_common.config import check
from aiops_common.logs import LEVELS, LogLevel
from detector.diagnosis.config import DiagnosisConfig
from detector.optimizer.config import OptimizerConfig, check_history
from detector.shard import parse_shard

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
    # This query's own `model` section, for series that the global one does
    # not suit (too little history for the ensemble, say). It is read whole:
    # keys it leaves out take the built-in defaults, not the global section's.
    model: ModelConfig | None = None

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
class SeasonalConfig:
    """Daily and weekly profiles: how fine, how far back, how much jitter."""

    bucket_seconds: float = 300.0
    days: int = 7
    weeks: int = 0
    jitter_buckets: int = 3

    def __post_init__(self) -> None:
        check(
            self.bucket_seconds > 0 and 86400 % self.bucket_seconds == 0,
            "bucket_seconds",
            f"must divide a day (86400 s), got {self.bucket_seconds!r}",
        )
        for key in ("days", "weeks", "jitter_buckets"):
            value = getattr(self, key)
            check(value >= 0, key, f"must be >= 0, got {value!r}")


@dataclass(frozen=True)
class ForecasterConfig:
    """The PyTorch forecaster shared by the series of one query."""

    enabled: bool = False
    context_points: int = 48
    channels: int = 16
    epochs: int = 4
    samples: int = 4096
    retrain_seconds: float = 86400.0
    min_points: int = 576

    def __post_init__(self) -> None:
        for key in ("context_points", "channels", "epochs", "samples", "min_points"):
            value = getattr(self, key)
            check(value >= 1, key, f"must be >= 1, got {value!r}")
        check(
            self.retrain_seconds > 0,
            "retrain_seconds",
            f"must be > 0, got {self.retrain_seconds!r}",
        )


@dataclass(frozen=True)
class EnsembleConfig:
    """The scores the ensemble combines and the decision on top of them.

    Lengths are in points of the query's step.
    """

    short_points: int = 48
    reference_points: int = 2000
    shift_reference_points: int = 1000
    refit_points: int = 72
    discord_points: int = 24
    min_history: int = 288
    persistence_points: int = 288
    decay_per_point: float = 0.005
    risk: float = 1e-2
    spot_level: float = 0.98
    spot_init_points: int = 576
    dspot_depth: int = 0
    hysteresis: float = 0.8
    quiet_points: int = 288
    evidence_floor: float = 2.5
    seasonal: SeasonalConfig = field(default_factory=SeasonalConfig)
    forecaster: ForecasterConfig = field(default_factory=ForecasterConfig)

    def __post_init__(self) -> None:
        for key in (
            "short_points",
            "reference_points",
            "shift_reference_points",
            "refit_points",
            "discord_points",
            "min_history",
            "persistence_points",
            "spot_init_points",
        ):
            value = getattr(self, key)
            check(value >= 1, key, f"must be >= 1, got {value!r}")
        for key in ("dspot_depth", "quiet_points"):
            value = getattr(self, key)
            check(value >= 0, key, f"must be >= 0, got {value!r}")
        check(
            self.decay_per_point >= 0,
            "decay_per_point",
            f"must be >= 0, got {self.decay_per_point!r}",
        )
        check(0 < self.risk < 1, "risk", f"must be in (0, 1), got {self.risk!r}")
        check(
            0 < self.spot_level < 1,
            "spot_level",
            f"must be in (0, 1), got {self.spot_level!r}",
        )
        check(
            self.evidence_floor > 0,
            "evidence_floor",
            f"must be > 0, got {self.evidence_floor!r}",
        )
        check(
            0 < self.hysteresis <= 1,
            "hysteresis",
            f"must be in (0, 1], got {self.hysteresis!r}",
        )


@dataclass(frozen=True)
class ModelConfig:
    """Which model scores a query's series, and its settings.

    `kind: ensemble` runs the suite of detector.ensemble; `kind: robust` the
    single rolling median/MAD model. `window`, `min_points` and `threshold`
    serve both: the robust model's window, the points before any decision,
    and the band's half-width in robust standard deviations.
    """

    kind: Literal["ensemble", "robust"] = "ensemble"
    window: int = 288
    min_points: int = 30
    threshold: float = 6.0
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)

    def __post_init__(self) -> None:
        check(self.window >= 3, "window", f"must be >= 3, got {self.window!r}")
        check(
            1 <= self.min_points <= self.window,
            "min_points",
            f"must be between 1 and window ({self.window}), got {self.min_points!r}",
        )
        check(self.threshold > 0, "threshold", f"must be > 0, got {self.threshold!r}")


@dataclass(frozen=True)
class EntityConfig:
    """Series of several queries that describe one thing, scored together.

    The series of `queries` that agree on the `join` labels form one entity
    (one GPU: its utilization, memory, temperature and power); a model fitted
    on all entities of the group scores how well each entity's vector of
    values is reconstructed from the others.
    """

    name: str
    queries: tuple[str, ...]
    join: tuple[str, ...]
    method: Literal["pca", "autoencoder"] = "pca"
    components: int = 1
    retrain_seconds: float = 86400.0
    min_points: int = 288
    # One calibrated error, not a mean of several scores: a single surprise
    # reaches a given level far more often, so the floor sits higher.
    evidence_floor: float = 4.0

    def __post_init__(self) -> None:
        check(
            _NAME.fullmatch(self.name) is not None,
            "name",
            f"must match [a-zA-Z_][a-zA-Z0-9_]*, got {self.name!r}",
        )
        check(
            len(set(self.queries)) >= 2,
            "queries",
            f"needs at least two distinct queries, got {list(self.queries)!r}",
        )
        check(bool(self.join), "join", "needs at least one label")
        check(
            1 <= self.components < len(self.queries),
            "components",
            f"must be between 1 and {len(self.queries) - 1}, got {self.components!r}",
        )
        check(
            self.retrain_seconds > 0,
            "retrain_seconds",
            f"must be > 0, got {self.retrain_seconds!r}",
        )
        check(
            self.min_points >= 1,
            "min_points",
            f"must be >= 1, got {self.min_points!r}",
        )
        check(
            self.evidence_floor > 0,
            "evidence_floor",
            f"must be > 0, got {self.evidence_floor!r}",
        )


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
    log_level: LogLevel = "info"
    queries: tuple[QueryConfig, ...] = ()
    model: ModelConfig = field(default_factory=ModelConfig)
    entities: tuple[EntityConfig, ...] = ()
    # Empty: family models and each series' model live in memory only, and
    # are learnt again after a restart.
    state_dir: str = ""
    # How often each series' model is saved to state_dir (and at shutdown).
    # After a crash the engine catches up from the last save through
    # Prometheus, so a longer interval only makes that first query longer.
    checkpoint_interval_seconds: float = 3600.0
    shard: str = "0/1"
    shard_by: tuple[str, ...] = ()
    # Root causes, GPU fault classes and security findings, each cycle.
    diagnosis: DiagnosisConfig = field(default_factory=DiagnosisConfig)
    # Recommended allocations; absent (null) turns the optimizer off.
    optimizer: OptimizerConfig | None = None

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
            ("checkpoint_interval_seconds", 0, True),
            ("max_series", 1, False),
        ):
            value = getattr(self, key)
            ok = value > low if strict else value >= low
            check(ok, key, f"must be {'>' if strict else '>='} {low}, got {value!r}")
            # An infinite duration passes every comparison, then overflows a
            # timestamp in every query.
            if key.endswith("_seconds"):
                check(math.isfinite(value), key, f"must be finite, got {value!r}")
        check_history(self.history_seconds)

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

        try:
            _, count = parse_shard(self.shard)
        except ValueError as exc:
            check(False, "shard", str(exc))
        self._check_entities(names, count)

    def _check_entities(self, queries: list[str], shards: int) -> None:
        seen = set(queries)
        for i, entity in enumerate(self.entities):
            key = f"entities[{i}]"
            check(
                entity.name not in seen,
                key,
                f"name {entity.name!r} is already a query or entity name",
            )
            seen.add(entity.name)
            unknown = [q for q in entity.queries if q not in queries]
            check(not unknown, key, f"unknown queries {unknown!r}")
            # All series of one entity must meet on one replica.
            check(
                shards == 1
                or (bool(self.shard_by) and set(self.shard_by) <= set(entity.join)),
                key,
                f"with several shards, shard_by {list(self.shard_by)!r} must be a "
                f"non-empty subset of join {list(entity.join)!r}",
            )
            # An entity reads its members' scores back in robust units through
            # the global model's threshold (detector.entities), so a member
            # with a threshold of its own would be misread.
            odd = [
                q.name
                for q in self.queries
                if q.name in entity.queries
                and self.model_for(q).threshold != self.model.threshold
            ]
            check(
                not odd,
                key,
                f"queries {odd!r} have a model.threshold of their own; an "
                f"entity's queries need the global one ({self.model.threshold!r})",
            )

    def model_for(self, query: QueryConfig) -> ModelConfig:
        """The model settings of `query`'s series: its own, else the global ones."""
        return self.model if query.model is None else query.model
