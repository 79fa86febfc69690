"""Trailing means over a fixed number of points, fed in batches; needs numpy."""

from __future__ import annotations

import numpy as np


class TrailingMean:
    """Mean of each value and the `length - 1` before it (fewer at the start)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self._tail = np.empty(0)

    def update(self, values: np.ndarray) -> np.ndarray:
        x = np.asarray(values, dtype=float)
        data = np.concatenate([self._tail, x])
        sums = np.concatenate([[0.0], np.cumsum(data)])
        end = np.arange(self._tail.size, data.size) + 1
        begin = np.maximum(0, end - self.length)
        # A running sum over a long batch loses precision; the sums here span
        # one batch only, and each mean is a difference of nearby sums.
        out = (sums[end] - sums[begin]) / (end - begin)
        self._tail = data[-(self.length - 1) :] if self.length > 1 else data[:0]
        return out
