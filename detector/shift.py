"""Level shifts: a short trailing mean against its own recent range; needs numpy.

Comparing the mean of the last few points with the spread of that same mean
over a longer past, rather than with the spread of single points, keeps the
score honest for autocorrelated series, where means wander more than 1/sqrt(n)
would say.
"""

from __future__ import annotations

import numpy as np

from detector.baseline import RobustBaseline
from detector.window import TrailingMean


class LevelShift:
    """|trailing mean - its median| / its robust scale, over `reference` points.

    NaN until the reference holds `length` means.
    """

    def __init__(self, length: int, reference: int, refresh: int) -> None:
        self._mean = TrailingMean(length)
        self._baseline = RobustBaseline(reference, refresh, min_history=length)

    def update(self, values: np.ndarray) -> np.ndarray:
        means = self._mean.update(values)
        centre, scale = self._baseline.update(means)
        return np.abs(means - centre) / scale
