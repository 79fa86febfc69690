"""The reference recommenders users run today, as policies to compare against.

VPA-style: the Kubernetes VPA recommender's design (decaying histogram with a
24 h half-life; CPU from every sample, memory from each 24 h interval's peak;
p90 target, p50 and p95 bounds, 15% safety margin; an OOM adds a sample of
1.2x the allocation, at least 100 MiB more for bytes; without VPA's confidence
multipliers or request-weighted CPU samples). KRR-style: Robusta
KRR's simple strategy (p95 of CPU, peak memory plus 15%, 14 days of history).
Moving-window max: the peak of the last day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.optimizer.estimate import Estimate, Estimator, SeriesView
from detector.optimizer.histogram import DecayingHistogram
from detector.optimizer.resources import DAY, ResourceSpec

MIB = 1024.0**2

VPA_HALF_LIFE = DAY
VPA_MEMORY_INTERVAL = DAY
VPA_MARGIN = 0.15
VPA_OOM_RATIO = 1.2
VPA_OOM_MIN_BYTES = 100 * MIB
# VPA's smallest buckets: 0.01 core for CPU, 10 MB for memory. Relative units
# take the same share of their full size as 0.01 core is of 100 cores.
VPA_FIRST_BUCKET_BYTES = 1e7
VPA_FIRST_BUCKET_SHARE = 1e-4

KRR_HISTORY = 14 * DAY
KRR_CPU_PERCENTILE = 95.0
KRR_MEMORY_BUFFER = 0.15


def _first_bucket(spec: ResourceSpec) -> float:
    if spec.scale is None:
        return VPA_FIRST_BUCKET_BYTES
    return spec.scale * VPA_FIRST_BUCKET_SHARE


class VpaEstimator:
    """One series' VPA-style histogram."""

    def __init__(self, spec: ResourceSpec) -> None:
        self._spec = spec
        self._histogram = DecayingHistogram(_first_bucket(spec), VPA_HALF_LIFE)
        self._interval_start: float | None = None
        self._interval_peak = 0.0

    def observe(self, timestamp: float, value: float, allocation: float | None) -> None:
        if self._spec.kind == "cpu":
            self._histogram.add(value, 1.0, timestamp)
        else:
            self._add_peak(timestamp, value)
        if (
            self._spec.kind == "memory"
            and allocation is not None
            and value > allocation
        ):
            bump = allocation * VPA_OOM_RATIO
            if self._spec.unit == "bytes":
                bump = max(bump, allocation + VPA_OOM_MIN_BYTES)
            self._add_peak(timestamp, bump)

    def estimate(self, view: SeriesView, now: float) -> Estimate:
        grow = 1.0 + VPA_MARGIN
        return Estimate(
            lower=grow * self._histogram.percentile(0.5),
            target=grow * self._histogram.percentile(0.9),
            upper=grow * self._histogram.percentile(0.95),
        )

    def _add_peak(self, timestamp: float, value: float) -> None:
        # One sample per interval, its peak so far: a bigger reading replaces it.
        start = self._interval_start
        if start is None or timestamp >= start + VPA_MEMORY_INTERVAL:
            self._interval_start = start = (
                timestamp
                if start is None
                else start
                + VPA_MEMORY_INTERVAL * ((timestamp - start) // VPA_MEMORY_INTERVAL)
            )
            self._interval_peak = value
            self._histogram.add(value, 1.0, start)
        elif value > self._interval_peak:
            self._histogram.subtract(self._interval_peak, 1.0, start)
            self._histogram.add(value, 1.0, start)
            self._interval_peak = value


class KrrEstimator:
    """KRR's simple strategy over the last 14 days."""

    def __init__(self, spec: ResourceSpec) -> None:
        self._spec = spec

    def observe(self, timestamp: float, value: float, allocation: float | None) -> None:
        pass

    def estimate(self, view: SeriesView, now: float) -> Estimate:
        t, u = view.history.t, view.history.u
        recent = u[np.searchsorted(t, now - KRR_HISTORY) :]
        if self._spec.kind == "cpu":
            value = float(np.percentile(recent, KRR_CPU_PERCENTILE))
        else:
            value = float(recent.max()) * (1 + KRR_MEMORY_BUFFER)
        return Estimate(value, value, value)


class WindowMaxEstimator:
    """The peak of the last `window` seconds (all history if that is empty)."""

    def __init__(self, window: float) -> None:
        self._window = window

    def observe(self, timestamp: float, value: float, allocation: float | None) -> None:
        pass

    def estimate(self, view: SeriesView, now: float) -> Estimate:
        t, u = view.history.t, view.history.u
        recent = u[np.searchsorted(t, now - self._window) :]
        value = float((recent if recent.size else u).max())
        return Estimate(value, value, value)


@dataclass
class VpaPolicy:
    name: str = "vpa-style"

    def estimator(self, spec: ResourceSpec, key: str) -> Estimator:
        return VpaEstimator(spec)

    def advance(self, now: float) -> None:
        pass


@dataclass
class KrrPolicy:
    name: str = "krr-style"

    def estimator(self, spec: ResourceSpec, key: str) -> Estimator:
        return KrrEstimator(spec)

    def advance(self, now: float) -> None:
        pass


@dataclass
class WindowMaxPolicy:
    window: float = DAY
    name: str = "window-max"

    def estimator(self, spec: ResourceSpec, key: str) -> Estimator:
        return WindowMaxEstimator(self.window)

    def advance(self, now: float) -> None:
        pass
