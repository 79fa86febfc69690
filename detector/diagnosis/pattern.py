"""The shape of a cause's series over an anomaly window: a runaway, a leak, a
GPU stuck idle or busy, or a drop. Pure functions over points."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RUNAWAY = "runaway"
MEMORY_LEAK = "memory_leak"
STUCK_IDLE = "stuck_idle"
STUCK_BUSY = "stuck_busy"
DROP = "drop"
UNKNOWN = "unknown"

# Kinds of quantity a series holds, which decide the shapes it can take.
UTILIZATION = "utilization"  # a 0-1 ratio
MEMORY = "memory"  # bytes
USAGE = "usage"  # anything else that grows with load (CPU share, ...)

# A ratio pinned within this distance of 0 or 1 for the whole window is stuck.
STUCK_TOLERANCE = 0.01
# A leak rises through the window, well above the scatter around its line.
LEAK_MIN_POINTS = 6
LEAK_RISE_OVER_SCATTER = 3.0


def classify_shape(
    baseline: Sequence[float], window: Sequence[float], quantity: str
) -> str:
    """The fault shape of `window` against `baseline` for a `quantity`."""
    during = np.asarray(window, dtype=float)
    before = np.asarray(baseline, dtype=float)
    if during.size == 0:
        return UNKNOWN

    if quantity == UTILIZATION and np.ptp(during) <= STUCK_TOLERANCE:
        if during.max() <= STUCK_TOLERANCE:
            return STUCK_IDLE
        if during.min() >= 1 - STUCK_TOLERANCE:
            return STUCK_BUSY

    base = float(np.median(before)) if before.size else 0.0
    level = float(np.median(during))
    if level < base:
        return DROP
    if quantity == MEMORY and _is_ramp(during):
        return MEMORY_LEAK
    return RUNAWAY


def _is_ramp(values: np.ndarray) -> bool:
    # A line through the window whose rise stands well above the scatter
    # around it; a step at the window's start fits a flat line instead.
    if values.size < LEAK_MIN_POINTS:
        return False
    x = np.arange(values.size, dtype=float)
    slope, intercept = np.polyfit(x, values, 1)
    if slope <= 0:
        return False
    residual = values - (slope * x + intercept)
    spread = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    rise = slope * (values.size - 1)
    thirds = np.array_split(values, 3)
    rising = np.median(thirds[0]) < np.median(thirds[1]) < np.median(thirds[2])
    return bool(rising and rise >= LEAK_RISE_OVER_SCATTER * max(spread, 1e-12))
