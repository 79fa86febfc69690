"""A resource's queried series as a Fleet's points, one series per identity.

Readings follow the shared data's loading rules (usage.py): a non-finite
reading is dropped, a negative one becomes 0 and of readings sharing a
timestamp the largest is kept, so that the service sizes
what the backtest scores. A series above the unit's full size, or above any
reading the unit can plausibly hold, is set apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from detector.optimizer.resources import above_full_size
from detector.optimizer.snapshot import LabelPairs
from detector.optimizer.usage import largest_per_timestamp
from detector.prometheus import Series


@dataclass
class Readings:
    """Points by identity, and what was set aside or changed to get them."""

    points: dict[LabelPairs, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )
    clipped: int = 0
    dropped: int = 0
    repeated: int = 0
    # Series whose readings passed the unit's largest reading, with their largest.
    over_scale: list[tuple[LabelPairs, float]] = field(default_factory=list)
    # Series left out because an earlier one had the same identity.
    duplicates: list[LabelPairs] = field(default_factory=list)


def identity(labels: dict[str, str], names: tuple[str, ...]) -> LabelPairs:
    """A series' identity: the configured labels, empty where absent."""
    return tuple((name, labels.get(name, "")) for name in names)


def gather(
    series: Sequence[Series], names: tuple[str, ...], scale: float | None, unit: str
) -> Readings:
    """The points of `series` by identity over `names`, cleaned."""
    readings = Readings()
    for s in series:
        a = np.asarray(s.points, dtype=float).reshape(-1, 2)
        finite = np.isfinite(a).all(axis=1)
        readings.dropped += int(np.count_nonzero(~finite))
        a = a[finite]
        if a.size == 0:
            continue

        negative = a[:, 1] < 0
        readings.clipped += int(np.count_nonzero(negative))
        a[negative, 1] = 0.0

        # Series with the same labels in one answer reach us merged, their
        # points one after the other, so times repeat and go back.
        t, u = largest_per_timestamp(a[:, 0], a[:, 1])
        readings.repeated += len(a) - t.size

        key = identity(s.labels, names)
        peak = float(u.max())
        if above_full_size(peak, scale, unit):
            # A ratio above 1 is a percentage or worse; it is not scaled here.
            readings.over_scale.append((key, peak))
        elif key in readings.points:
            # Labels that do not tell series apart (warned of by the caller):
            # sized by the largest of them at each time, never below any.
            readings.duplicates.append(key)
            kept_t, kept_u = readings.points[key]
            readings.points[key] = largest_per_timestamp(
                np.concatenate((kept_t, t)), np.concatenate((kept_u, u))
            )
        else:
            readings.points[key] = (t, u)
    return readings
