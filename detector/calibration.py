"""Tail probabilities of a stream against its own past; needs numpy.

Every raw score of the suite has its own scale, so each goes through a
TailSurprise: the empirical distribution of its last values, with a GPD fitted
above a high quantile so that values beyond anything seen still get a finite,
ordered probability. The output is the surprise -log10(p).
"""

from __future__ import annotations

import math

import numpy as np

from detector.gpd import fit_moments

# A tail needs this many excesses before its GPD is trusted; below, only the
# empirical distribution speaks.
MIN_EXCESSES = 10

# Clipping the GPD shape to [0, 1/2]: a negative shape would put a hard end
# point on the tail, beyond which the probability is 0 and the surprise
# infinite; above 1/2 the moment fit is not valid.
SHAPE_RANGE = (0.0, 0.5)

# With n past values the data themselves support p down to about 1/n; the fitted
# tail may go this many decades further, no more, so that a short history
# (warm-up, a new series) cannot produce astronomical surprises.
EXTRAPOLATION_DECADES = 2.0


class TailSurprise:
    """Surprise of each new value against the previous `history` values.

    The reference (sorted past values and fitted tails) is rebuilt every
    `refit` values, at fixed counts, so a batch and the same values fed one
    by one give identical results.
    """

    def __init__(
        self,
        history: int,
        refit: int,
        level: float,
        two_sided: bool,
        min_history: int,
        dtype: type = np.float64,
    ) -> None:
        self.history = history
        self.dtype = dtype
        self.refit = refit
        self.level = level
        self.two_sided = two_sided
        self.min_history = min_history
        self._past = np.empty(0, dtype=dtype)
        self._count = 0
        self._reference: _Reference | None = None

    @property
    def count(self) -> int:
        return self._count

    @property
    def past(self) -> np.ndarray:
        """The last `history` values seen, oldest first."""
        return self._past

    def update(self, values: np.ndarray) -> np.ndarray:
        """Surprise in decades (-log10 p) of each value; NaN while warming up."""
        # Values are compared in the stored precision, so that a repeated value
        # ties with its stored copies exactly.
        x = np.asarray(values, dtype=self.dtype)
        out = np.full(x.size, np.nan)
        start = 0
        while start < x.size:
            if self._count % self.refit == 0:
                self._reference = self._build()
            stop = min(x.size, start + self.refit - self._count % self.refit)
            block = x[start:stop]
            if self._reference is not None:
                out[start:stop] = self._reference.surprise(block)
            self._past = np.concatenate([self._past, block])[-self.history :]
            self._count += block.size
            start = stop
        return out

    def _build(self) -> _Reference | None:
        if self._past.size < self.min_history:
            return None
        return _Reference(np.sort(self._past), self.level, self.two_sided)


class _Reference:
    """One frozen reference: sorted values plus a GPD per scored tail."""

    def __init__(self, ordered: np.ndarray, level: float, two_sided: bool) -> None:
        self.ordered = ordered
        self.two_sided = two_sided
        self.cap = math.log10(ordered.size + 1) + EXTRAPOLATION_DECADES
        self.upper = _fit_tail(ordered, level)
        self.lower = _fit_tail(-ordered[::-1], level) if two_sided else None

    def surprise(self, x: np.ndarray) -> np.ndarray:
        n = self.ordered.size
        below = np.searchsorted(self.ordered, x, side="left")
        p = _tail_probability((n - below + 0.5) / (n + 1), x, self.upper, n)
        if self.two_sided:
            at_most = np.searchsorted(self.ordered, x, side="right")
            low = _tail_probability((at_most + 0.5) / (n + 1), -x, self.lower, n)
            p = np.minimum(1.0, 2.0 * np.minimum(p, low))
        with np.errstate(divide="ignore"):
            decades = -np.log10(np.maximum(p, 1e-300))
        return np.minimum(decades, self.cap)


def _fit_tail(ordered: np.ndarray, level: float):
    # np.quantile's linear interpolation, on values already sorted.
    position = level * (ordered.size - 1)
    below = int(position)
    above = min(below + 1, ordered.size - 1)
    fraction = position - below
    threshold = float(ordered[below] + fraction * (ordered[above] - ordered[below]))
    excesses = ordered[ordered > threshold] - threshold
    if excesses.size < MIN_EXCESSES:
        return None
    tail = fit_moments(excesses)
    shape = min(max(tail.gamma, SHAPE_RANGE[0]), SHAPE_RANGE[1])
    return threshold, excesses.size / ordered.size, tail._replace(gamma=shape)


def _tail_probability(empirical: np.ndarray, x: np.ndarray, fitted, n: int):
    if fitted is None:
        return empirical
    threshold, share, tail = fitted
    beyond = x > threshold
    if not beyond.any():
        return empirical
    modelled = share * tail.survival(np.where(beyond, x - threshold, 0.0))
    return np.where(beyond, np.minimum(empirical, modelled), empirical)
