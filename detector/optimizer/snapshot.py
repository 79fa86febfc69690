"""The optimizer's state as one immutable value, handed from the loop to scrapes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from detector.optimizer.power import PowerAdvice

LabelPairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Sizes for one series in its resource's unit; `allocated` when known."""

    labels: LabelPairs
    lower: float
    target: float
    upper: float
    allocated: float | None


@dataclass(frozen=True, slots=True)
class ResourceState:
    """One resource's recommendations and how many series got none."""

    resource: str
    label_names: tuple[str, ...]
    recommendations: tuple[Recommendation, ...] = ()
    too_short: int = 0
    without_allocation: int = 0
    # Sum of allocated minus target over the series whose allocation is known:
    # what applying every recommendation would free (negative: would add).
    savings: float = 0.0


@dataclass(frozen=True, slots=True)
class OptimizerSnapshot:
    """Everything the optimizer's metrics show, as of the end of one cycle."""

    resources: tuple[ResourceState, ...] = ()
    power_label_names: tuple[str, ...] = ()
    power: tuple[PowerAdvice, ...] = ()
    gpus: Mapping[str, int] = field(default_factory=dict)
    errors: Mapping[str, int] = field(default_factory=dict)
    unit_mismatches: Mapping[str, int] = field(default_factory=dict)
    # New series not sized because max_series was reached, by resource.
    series_refused: Mapping[str, int] = field(default_factory=dict)
    last_success_timestamp_seconds: float = 0.0
    cycle_duration_seconds: float = 0.0
    # How often a cycle starts, so that staleness alerts can scale with it.
    interval_seconds: float = 0.0
