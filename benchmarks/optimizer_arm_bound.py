"""How far a series' best arm can be learnt from its own past.

The learning policy picks among the arms of detector.optimizer.arms. Here
each arm is held for a whole series (above the OOM floor on memory, as the
Sizer keeps it) and the arm is picked per series in three ways: knowing the
whole series, knowing its second half, and learnt on its first half then
scored on its second. The first is the bound a per-series learner is held
to; the last two tell how much of it is hindsight: picked among hundreds of
arms on the same readings it is scored on, the bound is as low as it is
partly because it fits their noise.
"""

from __future__ import annotations

import numpy as np

from benchmarks.optimizer_bound import Unit, periods, pick, picked, play, sum_units
from detector.optimizer.arms import ArmGrid
from detector.optimizer.fleet import Row
from detector.optimizer.resources import ResourceSpec


def arm_periods(usage: dict, spec: ResourceSpec, grid: ArmGrid) -> list[list[Unit]]:
    """Per series, per period from T0: every arm's outcome, each arm held."""

    def arms(t: np.ndarray, u: np.ndarray, lo: int, at: float) -> np.ndarray:
        values = grid.values(t[:lo], u[:lo], at, spec.period_seconds)
        return values if spec.scale is None else np.minimum(values, spec.scale)

    out = []
    for t, u in usage.values():
        parts = play(t, u, spec, arms)
        if parts:
            out.append(parts)
    return out


def arm_bounds(usage: dict, spec: ResourceSpec, weight: float) -> dict[str, float]:
    """Cost (slack% + weight x violation%) of one arm per series, picked three ways."""
    by_series = arm_periods(usage, spec, ArmGrid())
    whole = [sum_units(p) for p in by_series]
    # A series of one period has no first half: it is scored whole in both.
    first = [sum_units(p[: max(len(p) // 2, 1)]) for p in by_series]
    second = [sum_units(p[len(p) // 2 :]) for p in by_series]

    def cost(groups: list[Unit], picks: list[int]) -> float:
        slack, violation = picked(groups, picks)
        return round(slack + weight * violation, 2)

    return {
        "arm_per_series": cost(whole, pick(whole, weight)),
        "arm_per_series_second_half": cost(second, pick(second, weight)),
        "arm_learnt_on_first_half": cost(second, pick(first, weight)),
    }


def second_half_cost(
    usage: dict, spec: ResourceSpec, rows: list[Row], weight: float
) -> float:
    """Cost of a policy's allocations on the readings of each series' second half.

    The halves are those of arm_bounds (whole update periods from T0), so the
    policy can be set beside an arm learnt on the first half.
    """
    changes: dict = {}
    for row in rows:
        changes.setdefault(row.series, []).append((row.timestamp, row.allocation))
    slack = allocated = short = readings = 0.0
    for key, (t, u) in usage.items():
        spans = periods(t, spec)
        if not spans or key not in changes:
            continue
        lo = spans[len(spans) // 2][0]
        at, value = np.array(sorted(changes[key])).T
        allocation = value[np.searchsorted(at, t[lo:], side="right") - 1]
        over = allocation - u[lo:]
        slack += float(np.maximum(over, 0.0).sum())
        allocated += float(allocation.sum())
        short += float((over < 0).sum())
        readings += over.size
    return round(100 * slack / allocated + weight * 100 * short / readings, 2)
