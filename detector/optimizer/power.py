"""GPU power-limit advice: a lower cap for GPUs that draw well below theirs.

Needs each GPU's draw history, the limit in force and the range NVML allows
(nvmlDeviceGetPowerManagementLimitConstraints). A GPU without a limit or a
range gets no advice and is counted as such: a cap outside the range would be
refused by the driver, and guessing the range would be worse than silence.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from detector.optimizer.config import PowerConfig

if TYPE_CHECKING:
    # queries.py reaches this module through snapshot.py.
    from detector.optimizer.queries import PowerReadings

log = logging.getLogger(__name__)

# States a GPU's advice can be in; every GPU seen is in exactly one.
RECOMMENDED = "recommended"
TOO_SHORT = "too_short"
NO_LIMIT = "no_limit"
NO_RANGE = "no_limit_range"
GPU_STATES = (RECOMMENDED, TOO_SHORT, NO_LIMIT, NO_RANGE)


@dataclass(frozen=True)
class PowerAdvice:
    """A cap for one GPU, in watts, and what it is expected to save."""

    labels: tuple[tuple[str, str], ...]
    lower: float
    target: float
    upper: float
    limit: float
    # Power budget freed: the limit in force minus the target.
    budget_savings_watts: float
    # Mean draw above the target over the window: what the cap would have
    # clipped, an upper bound on the drop in draw (and the work slowed).
    draw_savings_watts: float


def advise(
    config: PowerConfig,
    labels: tuple[tuple[str, str], ...],
    t: np.ndarray,
    draw: np.ndarray,
    limit: float | None,
    low: float | None,
    high: float | None,
) -> PowerAdvice | str:
    """Advice for one GPU, or the state that explains why there is none."""
    if limit is None:
        return NO_LIMIT
    if low is None or high is None or not low <= high:
        return NO_RANGE
    if t.size == 0 or t[-1] - t[0] < config.warmup_seconds:
        return TOO_SHORT

    grow = 1.0 + config.headroom

    def cap(value: float) -> float:
        # Whole watts, rounded up: NVML takes milliwatts, operators read watts.
        # (Rounded to a microwatt first, so that 200 x 1.1 stays 220.)
        watts = math.ceil(round(value * grow, 6))
        return float(min(max(watts, low), high, max(limit, low)))

    upper = cap(float(draw.max()))
    target = min(cap(float(np.quantile(draw, config.percentile))), upper)
    lower = min(cap(float(np.quantile(draw, 0.9))), target)
    return PowerAdvice(
        labels=labels,
        lower=lower,
        target=target,
        upper=upper,
        limit=limit,
        budget_savings_watts=max(limit - target, 0.0),
        draw_savings_watts=float(np.maximum(draw - target, 0.0).mean()),
    )


def advise_fleet(
    config: PowerConfig, readings: PowerReadings
) -> tuple[tuple[PowerAdvice, ...], dict[str, int]]:
    """Advice for every GPU seen, and how many GPUs are in each state."""
    draws, limits = readings.draws.points, readings.limits
    advice: list[PowerAdvice] = []
    states = dict.fromkeys(GPU_STATES, 0)
    for key in sorted(set(draws) | set(limits)):
        t, watts = draws.get(key, (np.empty(0), np.empty(0)))
        result = advise(
            config,
            key,
            t,
            watts,
            limits.get(key),
            readings.lows.get(key),
            readings.highs.get(key),
        )
        if isinstance(result, str):
            states[result] += 1
            log.debug("no power advice gpu=%s state=%s", dict(key), result)
        else:
            states[RECOMMENDED] += 1
            advice.append(result)
    return tuple(advice), states
