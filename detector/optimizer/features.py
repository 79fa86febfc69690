"""The context a learning policy sees at a decision, from the series' own past.

Every feature is free of the resource's unit (ratios, shares, logs of ratios),
so that one model serves bytes, percentages and fractions alike.
"""

from __future__ import annotations

import math

import numpy as np

from detector.optimizer.estimate import SeriesView
from detector.optimizer.outcome import Record

NAMES = (
    "recent_peak_vs_long_peak",
    "recent_median_vs_recent_peak",
    "recent_p90_vs_recent_peak",
    "recent_range_share",
    "recent_idle_share",
    "trend",
    "allocation_vs_recent_peak",
    "allocation_vs_long_peak",
    "violations_share",
    "violation_peak_vs_allocation",
    "since_change",
    "history_length",
    "near_full_share",
    "last_vs_recent_peak",
    "last_hour_vs_recent_median",
    "daily_peak_spread",
)

# Ratios are taken of values at least this share of the long peak, so that an
# idle series (all zeros) gives finite logs.
_TINY = 1e-3
_CLIP = 4.0


def _log_ratio(a: float, b: float, floor: float) -> float:
    return float(np.clip(math.log(max(a, floor) / max(b, floor)), -_CLIP, _CLIP))


def recent(t: np.ndarray, u: np.ndarray, since: float) -> np.ndarray:
    """Readings from `since` on, or the last one when there are none."""
    window = u[np.searchsorted(t, since) :]
    return window if window.size else u[-1:]


def context(view: SeriesView, now: float) -> np.ndarray:
    """One feature vector, in the order of NAMES."""
    spec = view.spec
    period = spec.period_seconds
    t, u = view.history.t, view.history.u
    last = recent(t, u, now - period)
    long_peak = float(recent(t, u, now - 16 * period).max())
    floor = max(long_peak * _TINY, 1e-12)
    peak = float(last.max())
    median = float(np.median(last))
    before = u[np.searchsorted(t, now - 2 * period) : np.searchsorted(t, now - period)]
    last_hour = recent(t, u, now - min(period, 3600.0))
    allocation = view.allocation if view.allocation is not None else long_peak
    since = (now - view.last_change) / period if math.isfinite(view.last_change) else 0
    near_full = 0.0
    if spec.scale is not None:
        near_full = float(np.mean(last >= 0.98 * spec.scale))
    span = max(float(t[-1] - t[0]), 0.0)

    # Spread of the peaks of the last four periods: high when peaks come and go.
    edges = np.searchsorted(t, now - period * np.arange(5))
    pairs = zip(edges[:-1], edges[1:], strict=True)
    peaks = [float(u[lo:hi].max()) for hi, lo in pairs if hi > lo]
    spread = (max(peaks) - min(peaks)) / max(max(peaks), floor) if peaks else 0.0

    return np.array(
        [
            _log_ratio(peak, long_peak, floor),
            _log_ratio(median, peak, floor),
            _log_ratio(float(np.quantile(last, 0.9)), peak, floor),
            (peak - float(last.min())) / max(peak, floor),
            float(np.mean(last <= floor)),
            _log_ratio(float(last.mean()), float(before.mean()), floor)
            if before.size
            else 0.0,
            _log_ratio(allocation, peak, floor),
            _log_ratio(allocation, long_peak, floor),
            min(view.violations_since_decision / max(last.size, 1), 1.0),
            _log_ratio(view.violation_peak, allocation, floor)
            if view.violations_since_decision
            else 0.0,
            min(since, 4.0),
            min(math.log1p(span / period), 4.0),
            near_full,
            _log_ratio(float(u[-1]), peak, floor),
            _log_ratio(float(last_hour.mean()), median, floor),
            spread,
        ],
        dtype=np.float32,
    )


# Per arm: its 4 descriptors, whether it holds, its size against the long
# peak, the last period's peak and the last reading, the share of readings it
# left short and its slack in the series' record, how much record there is,
# and whether the resource is memory.
ARM_FEATURES = 12


def arm_features(
    descriptors: np.ndarray,
    values: np.ndarray,
    reference: float,
    view: SeriesView,
    now: float,
    record: Record,
) -> np.ndarray:
    """One row per arm (the hold arm last), free of the resource's unit."""
    spec = view.spec
    period = spec.period_seconds
    t, u = view.history.t, view.history.u
    small = reference * 1e-3
    safe = np.maximum(np.nan_to_num(values, nan=reference), small)
    arm = np.zeros((len(values), ARM_FEATURES), dtype=np.float32)
    arm[:-1, :4] = descriptors
    arm[-1, 4] = 1.0
    arm[:, 5] = np.clip(np.log(safe / reference), -4, 4)
    peak = float(recent(t, u, now - period).max())
    arm[:, 6] = np.clip(np.log(safe / max(peak, small)), -4, 4)
    arm[:, 7] = np.clip(np.log(safe / max(float(u[-1]), small)), -4, 4)
    if record.readings:
        arm[:, 8] = record.violated / record.readings
        arm[:, 9] = record.slack / record.readings
    arm[:, 10] = math.log1p(record.readings / max(period / spec.step_seconds, 1.0))
    arm[:, 11] = float(spec.kind == "memory")
    return arm
