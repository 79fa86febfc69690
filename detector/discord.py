"""Discords: how far the latest stretch of a series is from any earlier one.

For the window of the last `length` points, the distance to its nearest
neighbour among the windows that ended in the previous `history` points (a
causal, left-only matrix profile). A shape seen before, such as a daily
batch job's spike, finds a close neighbour; a new shape does not. Needs numpy.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Rows of the distance matrix computed at once: bounds the temporary to about
# rows x (history + rows) floats.
_BLOCK_ROWS = 512


@functools.lru_cache(maxsize=16)
def _outside(
    rows: int, cols: int, offset: int, length: int, history: int
) -> np.ndarray:
    """Mask of candidates too close or too old; rows start `offset` columns in.

    Shared by every series: full batches and single points each have one shape.
    """
    r = np.arange(rows)[:, None] + offset
    c = np.arange(cols)[None, :]
    mask = (c > r - length) | (c < r - history)
    mask.setflags(write=False)
    return mask


class Discord:
    """Nearest-neighbour distance of each new window, per point (RMS units)."""

    def __init__(self, length: int, history: int) -> None:
        self.length = length
        self.history = history
        self._past = np.empty(0)

    def update(self, values: np.ndarray) -> np.ndarray:
        x = np.asarray(values, dtype=float)
        data = np.concatenate([self._past, x])
        out = np.full(x.size, np.nan)
        first_new = self._past.size

        if data.size >= self.length:
            # Distances do not change with a common offset; removing the median
            # keeps |a|^2 + |b|^2 - 2ab from cancelling on large values.
            centred = data - np.median(data)
            windows = sliding_window_view(centred, self.length)
            norms = np.einsum("ij,ij->i", windows, windows)
            # Window i ends at point i + length - 1.
            first_row = max(0, first_new - self.length + 1)
            for start in range(first_row, windows.shape[0], _BLOCK_ROWS):
                stop = min(windows.shape[0], start + _BLOCK_ROWS)
                nearest = self._nearest(windows, norms, start, stop)
                ends = np.arange(start, stop) + self.length - 1
                keep = ends >= first_new
                out[ends[keep] - first_new] = nearest[keep]

        keep_points = self.history + 2 * self.length
        self._past = data[-keep_points:]
        return out

    def _outside(self, rows: int, cols: int, offset: int) -> np.ndarray:
        return _outside(rows, cols, offset, self.length, self.history)

    def _nearest(
        self, windows: np.ndarray, norms: np.ndarray, start: int, stop: int
    ) -> np.ndarray:
        # Candidates end between `history` and `length` points before the row,
        # so that a window is never compared with one overlapping it.
        low = max(0, start - self.history)
        high = stop - self.length
        if high <= low:
            return np.full(stop - start, np.nan)
        # min over b of |a - b|^2 = |a|^2 + min over b of (|b|^2 - 2 a.b); the
        # matrix is built in place, one pass per step, as it is the hot spot.
        partial = windows[start:stop] @ windows[low:high].T
        partial *= -2.0
        partial += norms[None, low:high]
        partial[self._outside(stop - start, high - low, start - low)] = np.inf
        best = partial.min(axis=1) + norms[start:stop]
        with np.errstate(invalid="ignore"):
            distance = np.sqrt(np.maximum(best, 0.0)) / math.sqrt(self.length)
        return np.where(np.isfinite(best), distance, np.nan)
