"""The optimizer's settings, a frozen dataclass nested in the detector's config.

Each sized resource names its PromQL; a query whose metric names carry a unit
suffix other than the resource's is refused at start (a unit mismatch is
reported, not converted), and so is one that reads a counter without a rate.
The defaults read the exporter's own series.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from aiops_common.config import check
from detector.optimizer.policies import POLICY_NAMES, check_policy
from detector.optimizer.prior import PriorError
from detector.optimizer.resources import DAY, HOUR, Kind, ResourceSpec
from detector.prometheus import MAX_HISTORY_SECONDS

# Identity labels of the exporter's series; `instance` tells hosts apart.
GROUP_LABELS = ("instance", "command", "user", "container_id", "pod_uid", "unit")
GPU_GROUP_LABELS = (
    "instance",
    "gpu",
    "uuid",
    "command",
    "user",
    "container_id",
    "pod_uid",
)
GPU_LABELS = ("instance", "gpu", "uuid")

_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Metric names in PromQL: identifiers followed by a selector, a range, an
# offset or the end; function names are followed by "(" and are not matched.
_METRIC = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
# Strings, label matchers and grouping lists hold label names and values,
# which may end in a unit suffix too (`x_bytes{job="a_ratio"}`). Strings go
# first, as they may hold braces and parentheses of their own.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' r"|'(?:[^'\\]|\\.)*'" r"|`[^`]*`")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)"
)
# A counter (a name ending in `_total`) only grows: read as it stands, CPU
# seconds since boot pass for tens of thousands of cores. So a counter must be
# the range argument of a function that turns it into a change, as in
# rate(x_total[5m]); anything else that reads it is refused. Histograms'
# `_sum` and `_count` are counters too, but are let through, as some gauges
# end so too.
RANGE_FUNCTIONS = ("rate", "irate", "increase", "deriv")
_COUNTER_IN_RANGE = re.compile(
    rf"\b(?:{'|'.join(RANGE_FUNCTIONS)})\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"\s*(?:\{\})?\s*\["
)
UNIT_SUFFIXES = (
    "_seconds_total",
    "_joules_total",
    "_bytes",
    "_ratio",
    "_cores",
    "_watts",
    "_celsius",
    "_hertz",
    "_seconds",
)


@dataclass(frozen=True)
class ServiceResource:
    """A quantity the service sizes, and the unit suffixes its inputs may carry."""

    name: str
    kind: Kind
    unit: str
    scale: float | None
    suffixes: tuple[str, ...]


SERVICE_RESOURCES = {
    r.name: r
    for r in (
        # CPU time per second of wall clock is cores.
        ServiceResource(
            "cpu_cores", "cpu", "cores", None, ("_seconds_total", "_cores")
        ),
        ServiceResource("memory_bytes", "memory", "bytes", None, ("_bytes",)),
        ServiceResource("gpu_memory_bytes", "memory", "bytes", None, ("_bytes",)),
        ServiceResource("gpu_time_ratio", "cpu", "ratio", 1.0, ("_ratio",)),
    )
}


def _without_labels(promql: str) -> str:
    """`promql` with its strings, label matchers and grouping lists emptied."""
    text = _STRING.sub('""', promql)
    text = _MATCHERS.sub("{}", text)
    return _GROUPING.sub(r"\1 ()", text)


def metric_units(promql: str) -> set[str]:
    """The unit suffixes of the metric names a PromQL expression reads."""
    units = set()
    for name in _METRIC.findall(_without_labels(promql)):
        for suffix in UNIT_SUFFIXES:
            if name.endswith(suffix):
                units.add(suffix)
                break
    return units


def raw_counters(promql: str) -> list[str]:
    """The counters a PromQL expression reads other than through a rate."""
    text = _without_labels(promql)
    in_range = {m.start(1) for m in _COUNTER_IN_RANGE.finditer(text)}
    return [
        m.group(1)
        for m in _METRIC.finditer(text)
        if m.group(1).endswith("_total") and m.start(1) not in in_range
    ]


def _check_counters(key: str, promql: str) -> None:
    counter = next(iter(raw_counters(promql)), None)
    check(
        counter is None,
        key,
        f"reads the counter {counter!r} as it stands, not its rate; wrap it in "
        f"one of {', '.join(RANGE_FUNCTIONS)} over a range, as in "
        f"rate({counter}[5m])",
    )


def _check_units(key: str, promql: str, resource: ServiceResource) -> None:
    wrong = sorted(metric_units(promql) - set(resource.suffixes))
    check(
        not wrong,
        key,
        f"reads metrics in {', '.join(wrong)} but {resource.name!r} is in "
        f"{resource.unit} ({', '.join(resource.suffixes)}); convert in the query",
    )


def _check_duration(key: str, value: float, zero_ok: bool = False) -> None:
    """A number of seconds, > 0 (>= 0 if `zero_ok`) and finite: an infinite
    one passes every comparison, then runs a loop once or overflows an int."""
    if zero_ok:
        check(value >= 0, key, f"must be >= 0, got {value!r}")
    else:
        check(value > 0, key, f"must be > 0, got {value!r}")
    check(math.isfinite(value), key, f"must be finite, got {value!r}")


def _check_within_history(key: str, value: float) -> None:
    # Longer than any history the client may ask for, it can never be met:
    # said under its own name rather than as a history too short for it.
    check(
        value <= MAX_HISTORY_SECONDS,
        key,
        f"must be <= {MAX_HISTORY_SECONDS:g} (90 days, the longest history), "
        f"got {value!r}",
    )


def check_history(value: float) -> None:
    """No longer than the client asks Prometheus for (the detector's own
    history and the optimizer's alike)."""
    check(
        value <= MAX_HISTORY_SECONDS,
        "history_seconds",
        f"must be <= {MAX_HISTORY_SECONDS:g} (90 days), got {value!r}",
    )


@dataclass(frozen=True)
class ResourceQuery:
    """One sized resource: where its usage and its current allocation come from."""

    resource: str
    usage: str
    # The allocation in force (a limit), in the same unit; "" when unknown.
    allocation: str = ""
    labels: tuple[str, ...] = GROUP_LABELS
    step_seconds: float = 60.0
    warmup_seconds: float = 3 * HOUR
    period_seconds: float = HOUR

    def __post_init__(self) -> None:
        check(
            self.resource in SERVICE_RESOURCES,
            "resource",
            f"must be one of {', '.join(SERVICE_RESOURCES)}, got {self.resource!r}",
        )
        check(bool(self.usage.strip()), "usage", "must not be empty")
        check(bool(self.labels), "labels", "at least one label is required")
        for label in self.labels:
            check(
                _LABEL.fullmatch(label) is not None and label != "bound",
                "labels",
                f"{label!r} is not a usable label name ('bound' is taken)",
            )
        for key in ("step_seconds", "warmup_seconds", "period_seconds"):
            _check_duration(key, getattr(self, key))
            _check_within_history(key, getattr(self, key))
        resource = SERVICE_RESOURCES[self.resource]
        _check_units("usage", self.usage, resource)
        _check_counters("usage", self.usage)
        if self.allocation:
            _check_units("allocation", self.allocation, resource)
            _check_counters("allocation", self.allocation)

    @property
    def spec(self) -> ResourceSpec:
        resource = SERVICE_RESOURCES[self.resource]
        return ResourceSpec(
            self.resource,
            resource.kind,
            resource.unit,
            resource.scale,
            self.warmup_seconds,
            self.period_seconds,
            self.step_seconds,
        )


def _by(labels: tuple[str, ...]) -> str:
    return ", ".join(labels)


DEFAULT_RESOURCES = (
    # The exporter sends a group's limits only where it owns a cgroup that has
    # one, so an unlimited group has no allocation rather than a made-up one.
    ResourceQuery(
        "cpu_cores",
        f"sum by ({_by(GROUP_LABELS)}) "
        "(rate(aiops_process_group_cpu_seconds_total[5m]))",
        allocation=f"sum by ({_by(GROUP_LABELS)}) "
        "(aiops_process_group_cpu_limit_cores)",
    ),
    ResourceQuery(
        "memory_bytes",
        f"sum by ({_by(GROUP_LABELS)}) (aiops_process_group_resident_memory_bytes)",
        allocation=f"sum by ({_by(GROUP_LABELS)}) "
        "(aiops_process_group_memory_limit_bytes)",
    ),
    ResourceQuery(
        "gpu_memory_bytes",
        f"sum by ({_by(GPU_GROUP_LABELS)}) (aiops_gpu_process_memory_used_bytes)",
        labels=GPU_GROUP_LABELS,
    ),
    ResourceQuery(
        "gpu_time_ratio",
        f"sum by ({_by(GPU_GROUP_LABELS)}) (aiops_gpu_process_sm_utilization_ratio)",
        labels=GPU_GROUP_LABELS,
    ),
)


@dataclass(frozen=True)
class PowerConfig:
    """GPU power limits: draw, the limit in force and the range NVML allows."""

    draw: str = "aiops_gpu_power_watts"
    limit: str = "aiops_gpu_power_limit_watts"
    min_limit: str = "aiops_gpu_power_limit_min_watts"
    max_limit: str = "aiops_gpu_power_limit_max_watts"
    labels: tuple[str, ...] = GPU_LABELS
    step_seconds: float = 60.0
    warmup_seconds: float = HOUR
    window_seconds: float = DAY
    percentile: float = 0.99
    headroom: float = 0.1

    def __post_init__(self) -> None:
        for key in ("draw", "limit", "min_limit", "max_limit"):
            promql = getattr(self, key)
            check(bool(promql.strip()), key, "must not be empty")
            wrong = sorted(metric_units(promql) - {"_watts"})
            check(not wrong, key, f"reads metrics in {', '.join(wrong)}, not _watts")
        check(bool(self.labels), "labels", "at least one label is required")
        for key in ("step_seconds", "warmup_seconds", "window_seconds"):
            _check_duration(key, getattr(self, key))
            _check_within_history(key, getattr(self, key))
        check(
            0 < self.percentile <= 1,
            "percentile",
            f"must be in (0, 1], got {self.percentile!r}",
        )
        check(self.headroom >= 0, "headroom", f"must be >= 0, got {self.headroom!r}")


@dataclass(frozen=True)
class OptimizerConfig:
    """What to size, how often, with which policy."""

    # The detector's loop runs every few seconds; sizing needs far less.
    interval_seconds: float = 300.0
    query_delay_seconds: float = 30.0
    # How far back the first cycle reads; series silent longer are dropped.
    history_seconds: float = 2 * DAY
    max_series: int = 5000
    policy: str = "bandit"
    resources: tuple[ResourceQuery, ...] = DEFAULT_RESOURCES
    power: PowerConfig | None = field(default_factory=PowerConfig)

    def __post_init__(self) -> None:
        for key in ("interval_seconds", "history_seconds"):
            _check_duration(key, getattr(self, key))
        check_history(self.history_seconds)
        _check_duration("query_delay_seconds", self.query_delay_seconds, zero_ok=True)
        check(
            self.max_series >= 1, "max_series", f"must be >= 1, got {self.max_series!r}"
        )
        check(
            self.policy in POLICY_NAMES,
            "policy",
            f"must be one of {', '.join(POLICY_NAMES)}, got {self.policy!r}",
        )
        try:
            check_policy(self.policy)
        except PriorError as exc:
            # The weights are learnt, not committed: a fresh clone has none.
            check(
                False,
                "policy",
                f"{self.policy!r} needs the weights that `make train-optimizer` "
                f"writes: {exc}",
            )

        names = [r.resource for r in self.resources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        check(
            not duplicates,
            "resources",
            f"duplicate resource {', '.join(map(repr, duplicates))}",
        )
        for index, query in enumerate(self.resources):
            self._check_history_covers(index, query)

    def _check_history_covers(self, index: int, query: ResourceQuery) -> None:
        # Readings older than the history are dropped. Shorter than a step, it
        # holds one reading at most; shorter than the warm-up, the first
        # decision sees less than a warm-up, and after a restart every series
        # waits out a warm-up anew instead of starting from what Prometheus has.
        for key in ("step_seconds", "warmup_seconds"):
            needed = getattr(query, key)
            check(
                self.history_seconds >= needed,
                "history_seconds",
                f"must be >= resources[{index}].{key} ({needed!r} for "
                f"{query.resource!r}), got {self.history_seconds!r}; a shorter "
                "history drops readings before a warm-up is over",
            )
