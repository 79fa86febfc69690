"""One series' usage so far, and decayed percentiles over it."""

from __future__ import annotations

import math

import numpy as np


class History:
    """Timestamps and readings in time order, grown in place."""

    def __init__(self, capacity: int = 256) -> None:
        self._t = np.empty(capacity)
        self._u = np.empty(capacity)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def t(self) -> np.ndarray:
        return self._t[: self._n]

    @property
    def u(self) -> np.ndarray:
        return self._u[: self._n]

    @property
    def last_timestamp(self) -> float:
        return float(self._t[self._n - 1]) if self._n else -math.inf

    def append(self, timestamp: float, value: float) -> None:
        """Add a reading newer than every one so far; older ones are refused."""
        if timestamp <= self.last_timestamp:
            raise ValueError(
                f"timestamp {timestamp!r} is not after the last one "
                f"{self.last_timestamp!r}"
            )
        if self._n == len(self._t):
            self._t = np.resize(self._t, 2 * self._n)
            self._u = np.resize(self._u, 2 * self._n)
        self._t[self._n] = timestamp
        self._u[self._n] = value
        self._n += 1

    def forget_before(self, timestamp: float) -> None:
        """Drop readings older than `timestamp`, to bound a service's memory."""
        keep = int(np.searchsorted(self.t, timestamp, side="left"))
        if keep == 0:
            return
        rest = self._n - keep
        self._t[:rest] = self._t[keep : self._n]
        self._u[:rest] = self._u[keep : self._n]
        self._n = rest

    def between(self, start: float, end: float) -> np.ndarray:
        """Readings with start <= t < end."""
        t = self.t
        lo = int(np.searchsorted(t, start, side="left"))
        hi = int(np.searchsorted(t, end, side="left"))
        return self._u[lo:hi]


def decayed_percentiles(
    t: np.ndarray,
    u: np.ndarray,
    now: float,
    half_life: float,
    percentiles: np.ndarray,
    horizon: float,
) -> np.ndarray:
    """Percentiles of readings weighted by 2^(-age / half_life).

    Only readings younger than `horizon` count, so that an old peak stops
    holding the upper percentiles up; with no such reading, all of them count.
    """
    lo = int(np.searchsorted(t, now - horizon, side="left"))
    if lo >= len(t):
        lo = 0
    tt, uu = t[lo:], u[lo:]
    order = np.argsort(uu, kind="stable")
    weights = np.exp2((tt[order] - now) / half_life)
    cumulative = np.cumsum(weights)
    index = np.searchsorted(cumulative, percentiles * cumulative[-1], side="left")
    return uu[order][np.minimum(index, len(uu) - 1)]
