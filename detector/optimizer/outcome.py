"""What one period would have cost under every arm, once it is over.

A series in a replay does not react to its allocation, so every arm can be
scored on the readings that followed a decision (full-information feedback).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Record:
    """One workload's decayed sums per arm, over its reference size: slack,
    allocation, and short readings."""

    slack: np.ndarray
    allocated: np.ndarray
    violated: np.ndarray
    readings: float = 0.0
    backfilled: bool = False


@dataclass
class Period:
    """A decision waiting for the end of the period it covers."""

    record: Record
    start: float
    end: float
    history: object  # anything with t and u arrays
    values: np.ndarray  # per arm, the hold arm last (NaN: nothing held)
    inputs: np.ndarray
    reference: float
    chosen: int
    base: np.ndarray | None
    # What the records alone and the network would have picked.
    by_records: int = -1
    by_network: int = -1
    react_margin: float = 0.0


@dataclass
class Outcome:
    """Per arm over one period, slack and allocation over the reference."""

    inputs: np.ndarray
    base: np.ndarray | None
    slack: np.ndarray
    allocated: np.ndarray
    violated: np.ndarray
    readings: int
    reference: float


def score(period: Period) -> Outcome | None:
    """Every arm's outcome on the period's readings; None if it had none."""
    t, u = period.history.t, period.history.u  # type: ignore[attr-defined]
    lo = int(np.searchsorted(t, period.start, side="left"))
    hi = int(np.searchsorted(t, period.end, side="left"))
    readings = u[lo:hi]
    if readings.size == 0:
        return None

    values = period.values.copy()
    held = not np.isnan(values[-1])
    if not held:
        values[-1] = values[period.chosen]
    over = values[:, None] - readings[None, :]
    slack = np.maximum(over, 0.0).sum(axis=1)
    violated = (over < 0).sum(axis=1).astype(float)
    allocated = values * readings.size
    if held:
        # Holding keeps a change in hand: the first short reading is met with
        # a raise at once, as the Sizer does, not a period later. Every arm
        # at the held value shares one result: clipped to a resource's full
        # size, that is most of the arms, and one call per arm cost a replay
        # minutes.
        same = values == values[-1]
        slack[same], violated[same], allocated[same] = held_once(
            readings, float(values[-1]), period.react_margin
        )
    ref = period.reference
    return Outcome(
        period.inputs,
        period.base,
        slack / ref,
        allocated / ref,
        violated,
        int(readings.size),
        ref,
    )


def held_once(
    readings: np.ndarray, value: float, react_margin: float
) -> tuple[float, float, float]:
    """Slack, short readings and allocation sum of holding `value`, raised once."""
    short = np.flatnonzero(readings > value)
    if short.size == 0:
        return float((value - readings).sum()), 0.0, value * readings.size
    j = int(short[0])
    # TODO: the Sizer also carries a climb across the raise (sizer.climb_rate);
    # here a raise is the short reading plus the margin only, so holding looks
    # worse than it is on a climbing series. Passing the history before the
    # short reading in would let both agree.
    raised = max(value, float(readings[j]) * (1 + react_margin))
    before, after = readings[: j + 1], readings[j + 1 :]
    slack = np.maximum(value - before, 0).sum() + np.maximum(raised - after, 0).sum()
    return (
        float(slack),
        1.0 + float((after > raised).sum()),
        value * before.size + raised * after.size,
    )
