"""The arms a learning policy picks from: percentile, margin, half-life and trend.

An arm's allocation is a percentile of the series' decayed history, grown by a
margin; a trend arm adds the growth the last period showed, carried over one
more period, so that a leak is met before it runs short.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from detector.optimizer.history import decayed_percentiles


@dataclass(frozen=True)
class ArmGrid:
    """The arms, in update periods where a duration is meant."""

    percentiles: tuple[float, ...] = (0.5, 0.9, 0.98, 0.995, 1.0)
    margins: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)
    half_lives: tuple[float, ...] = (0.05, 0.25, 1.0, 4.0, 16.0)
    trends: tuple[bool, ...] = (False, True)
    # A reading older than this many half-lives no longer counts.
    horizon: float = 3.0

    def __post_init__(self) -> None:
        for key in ("percentiles", "margins", "half_lives", "trends"):
            if not getattr(self, key):
                raise ValueError(f"{key} must not be empty")
        if not all(0 < p <= 1 for p in self.percentiles):
            raise ValueError(f"percentiles must be in (0, 1], got {self.percentiles!r}")
        if not all(m >= 0 for m in self.margins):
            raise ValueError(f"margins must be >= 0, got {self.margins!r}")
        if not all(h > 0 for h in self.half_lives):
            raise ValueError(f"half_lives must be > 0, got {self.half_lives!r}")

    @property
    def arms(self) -> list[tuple[float, float, float, bool]]:
        """(half-life, percentile, margin, trend) in the order of values()."""
        return [
            (h, p, m, trend)
            for trend, h, p, m in product(
                self.trends, self.half_lives, self.percentiles, self.margins
            )
        ]

    def descriptors(self) -> np.ndarray:
        """One row per arm: percentile, margin, log2 half-life, trend."""
        return np.array(
            [[p, m, np.log2(h), float(trend)] for h, p, m, trend in self.arms],
            dtype=np.float32,
        )

    def values(
        self, t: np.ndarray, u: np.ndarray, now: float, period: float
    ) -> np.ndarray:
        """Every arm's allocation at `now` from readings t < now."""
        percentiles = np.array(self.percentiles)
        margins = 1.0 + np.array(self.margins)
        base = np.stack(
            [
                decayed_percentiles(
                    t, u, now, h * period, percentiles, self.horizon * h * period
                )
                for h in self.half_lives
            ]
        )
        plain = (base[:, :, None] * margins[None, None, :]).ravel()
        parts = []
        for trend in self.trends:
            parts.append(plain + growth(t, u, now, period) if trend else plain)
        return np.concatenate(parts)


def growth(t: np.ndarray, u: np.ndarray, now: float, period: float) -> float:
    """How much the last period's readings rose, by least squares; 0 if falling."""
    lo = int(np.searchsorted(t, now - period))
    tt, uu = t[lo:], u[lo:]
    if tt.size < 3 or tt[-1] <= tt[0]:
        return 0.0
    x = tt - tt.mean()
    slope = float((x * (uu - uu.mean())).sum() / (x * x).sum())
    return max(slope, 0.0) * period
