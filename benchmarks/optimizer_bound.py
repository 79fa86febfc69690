"""Hindsight bounds on the allocation protocol: how low a cost each rule family reaches.

A rule here is causal: every U from T0 it sets the allocation to a percentile
of the last H periods' readings, grown by a margin. The bounds pick rules with
hindsight: one rule for every series (what a fixed configuration can reach),
one rule per series, one rule per series and period (close to look-ahead),
and each period's best allocation outright (the look-ahead trade-off); for
memory, also one rule per series kept within a violation rate (memory's
target allows no more short readings than the VPA-style policy has), and one
rule per series that keeps the optimizer's OOM floor (never below a reading
that ran short), with and without that cap. Needs
only numpy; reads the usage as `detector.optimizer.usage` loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from detector.optimizer.resources import ResourceSpec

PERCENTILES = np.array([0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 1.0])
MARGINS = np.array([0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8])
# Windows in update periods; None is the whole history.
WINDOWS = (0.25, 0.5, 1.0, 2.0, 3.0, 6.0, 14.0, None)


@dataclass
class Unit:
    """Per candidate allocation over some readings: slack, allocation, short."""

    slack: np.ndarray
    allocated: np.ndarray
    short: np.ndarray
    readings: int


def _outcome(values: np.ndarray, readings: np.ndarray) -> Unit:
    ordered = np.sort(readings)
    cumulative = np.concatenate(([0.0], np.cumsum(ordered)))
    covered = np.searchsorted(ordered, values, side="right")
    return Unit(
        values * covered - cumulative[covered],
        values * ordered.size,
        (ordered.size - covered).astype(float),
        ordered.size,
    )


def periods(t: np.ndarray, spec: ResourceSpec) -> list[tuple[int, int, float]]:
    """(first reading, end, start time) of each update period from T0 with readings."""
    start = t[0] + spec.warmup_seconds
    if t[-1] < start:
        return []
    period = spec.period_seconds
    edges = start + period * np.arange(int((t[-1] - start) // period) + 2)
    cut = np.searchsorted(t, edges)
    return [
        (int(lo), int(hi), float(at))
        for lo, hi, at in zip(cut[:-1], cut[1:], edges[:-1], strict=True)
        if hi > lo
    ]


def play(
    t: np.ndarray,
    u: np.ndarray,
    spec: ResourceSpec,
    candidates: Callable[[np.ndarray, np.ndarray, int, float], np.ndarray],
) -> list[Unit]:
    """Each candidate's outcome per period; on memory, above its OOM floor.

    `candidates(t, u, lo, at)` gives every candidate's allocation for the
    period from `at`, whose first reading is `u[lo]`.

    A memory recommendation never drops below a reading that ran short (an
    OOM kill), so a candidate's later periods depend on its earlier ones:
    each is played period by period with a floor of its own.
    """
    parts, floor = [], 0.0
    for lo, hi, at in periods(t, spec):
        values = np.maximum(candidates(t, u, lo, at), floor)
        readings = u[lo:hi]
        parts.append(_outcome(values, readings))
        if spec.kind == "memory":
            peak = float(readings.max())
            floor = np.where(peak > values, np.maximum(floor, peak), floor)
    return parts


def units(usage: dict, spec: ResourceSpec) -> tuple[list[list[Unit]], list[list[Unit]]]:
    """Per series, per period: every rule's outcome, and every allocation's."""
    rules, lookahead = [], []
    for t, u in usage.values():
        spans = periods(t, spec)
        if not spans:
            continue
        rules.append(
            [
                _outcome(_rule_values(t, u, lo, at, spec), u[lo:hi])
                for lo, hi, at in spans
            ]
        )
        lookahead.append(
            [_outcome(np.unique(u[lo:hi]), u[lo:hi]) for lo, hi, _ in spans]
        )
    return rules, lookahead


def floored_units(usage: dict, spec: ResourceSpec) -> list[Unit]:
    """Per series on memory, every rule played out above its OOM floor."""

    def rules(t: np.ndarray, u: np.ndarray, lo: int, at: float) -> np.ndarray:
        return _rule_values(t, u, lo, at, spec)

    out = []
    for t, u in usage.values():
        parts = play(t, u, spec, rules)
        if parts:
            out.append(sum_units(parts))
    return out


def _rule_values(
    t: np.ndarray, u: np.ndarray, lo: int, at: float, spec: ResourceSpec
) -> np.ndarray:
    """Every rule's allocation for the period from `at` (reading index `lo`)."""
    parts = []
    for window in WINDOWS:
        first = (
            0
            if window is None
            else np.searchsorted(t, at - window * spec.period_seconds)
        )
        past = u[first:lo] if lo > first else u[:lo]
        q = np.quantile(past, PERCENTILES, method="inverted_cdf")
        parts.append(q[:, None] * (1 + MARGINS[None, :]))
    values = np.concatenate(parts).ravel()
    if spec.scale is not None:
        values = np.minimum(values, spec.scale)
    return values


def pooled(picked: list[Unit]) -> tuple[float, float]:
    """Pooled slack% and violation% of one candidate picked per unit."""
    slack = sum(float(x.slack[0]) for x in picked)
    allocated = sum(float(x.allocated[0]) for x in picked)
    short = sum(float(x.short[0]) for x in picked)
    readings = sum(x.readings for x in picked)
    return 100 * slack / max(allocated, 1e-300), 100 * short / readings


def best(groups: list[Unit], weight: float, rounds: int = 50) -> tuple[float, float]:
    """Pooled slack% and violation% of the cheapest candidate per group."""
    return picked(groups, pick(groups, weight, rounds))


def pick(groups: list[Unit], weight: float, rounds: int = 50) -> list[int]:
    """One candidate per group, to minimise slack% + weight x violation%.

    Pooled slack is a ratio, so the pick is Dinkelbach's: fix the slack share
    s, minimise slack - s x allocation + the violations, update s, repeat.
    """
    readings = sum(g.readings for g in groups)
    share, scale = 0.5, sum(float(np.median(g.allocated)) for g in groups)
    picks: list[int] = []
    for _ in range(rounds):
        fresh = [
            int(
                np.argmin(
                    (g.slack - share * g.allocated) / scale
                    + weight * g.short / readings
                )
            )
            for g in groups
        ]
        if fresh == picks:
            break
        picks = fresh
        slack = sum(g.slack[k] for g, k in zip(groups, picks, strict=True))
        scale = sum(g.allocated[k] for g, k in zip(groups, picks, strict=True))
        share = slack / max(scale, 1e-300)
    return picks


def picked(groups: list[Unit], picks: list[int]) -> tuple[float, float]:
    """Pooled slack% and violation% of candidate picks[i] of each group i."""
    return pooled(
        [
            Unit(g.slack[[k]], g.allocated[[k]], g.short[[k]], g.readings)
            for g, k in zip(groups, picks, strict=True)
        ]
    )


def best_within(groups: list[Unit], weight: float, cap: float) -> tuple[float, float]:
    """As best(), with the violation% kept at or under `cap`.

    Short readings are weighed more and more until the pick keeps under the
    cap; where none does, the last, safest pick is returned as it is.
    """
    for step in range(25):
        slack, violation = best(groups, weight * 2 ** (step / 2))
        if violation <= cap:
            break
    return slack, violation


def sum_units(parts: list[Unit]) -> Unit:
    return Unit(
        np.sum([p.slack for p in parts], axis=0),
        np.sum([p.allocated for p in parts], axis=0),
        np.sum([p.short for p in parts], axis=0),
        sum(p.readings for p in parts),
    )


def bounds(
    usage: dict, spec: ResourceSpec, weight: float, violation_cap: float | None = None
) -> dict[str, float]:
    """Cost (slack% + weight x violation%) of each hindsight pick.

    With `violation_cap` (a violation%), also "rule_per_series_capped": one
    rule per series with the pooled violation% at or under it.
    """
    rules, lookahead = units(usage, spec)
    picks = {
        "one_rule": [sum_units([p for series in rules for p in series])],
        "rule_per_series": [sum_units(series) for series in rules],
        "rule_per_period": [p for series in rules for p in series],
        "lookahead": [p for series in lookahead for p in series],
    }
    out = {}
    for name, groups in picks.items():
        slack, violation = best(groups, weight)
        out[name] = round(slack + weight * violation, 2)
    if violation_cap is not None:
        slack, violation = best_within(picks["rule_per_series"], weight, violation_cap)
        out["rule_per_series_capped"] = round(slack + weight * violation, 2)
    if spec.kind == "memory":
        floored = floored_units(usage, spec)
        slack, violation = best(floored, weight)
        out["rule_per_series_floor"] = round(slack + weight * violation, 2)
        if violation_cap is not None:
            slack, violation = best_within(floored, weight, violation_cap)
            out["rule_per_series_floor_capped"] = round(slack + weight * violation, 2)
    return out
