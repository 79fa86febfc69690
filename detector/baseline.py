"""A rolling robust centre and scale, refreshed at fixed counts; needs numpy.

The suite's scores measure distances in units of this scale, and the exported
band is drawn around this centre. Refreshing every `refresh` points rather
than every point costs one median per refresh instead of one per point.
"""

from __future__ import annotations

import numpy as np

from detector.model import MAD_TO_SIGMA, MEAN_AD_TO_SIGMA, RELATIVE_SCALE_FLOOR


class RobustBaseline:
    """Median and MAD-based scale of the last `window` values."""

    def __init__(self, window: int, refresh: int, min_history: int) -> None:
        self.window = window
        self.refresh = refresh
        self.min_history = min_history
        self._past = np.empty(0)
        self._count = 0
        self._centre = np.nan
        self._scale = np.nan

    def update(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centre and scale in force for each value (from earlier values only)."""
        x = np.asarray(values, dtype=float)
        centre = np.empty(x.size)
        scale = np.empty(x.size)
        start = 0
        while start < x.size:
            if self._count % self.refresh == 0:
                self._centre, self._scale = robust_centre_scale(
                    self._past, self.min_history
                )
            stop = min(x.size, start + self.refresh - self._count % self.refresh)
            centre[start:stop] = self._centre
            scale[start:stop] = self._scale
            self._past = np.concatenate([self._past, x[start:stop]])[-self.window :]
            self._count += stop - start
            start = stop
        return centre, scale

    @property
    def past(self) -> np.ndarray:
        return self._past


def robust_centre_scale(values: np.ndarray, min_history: int) -> tuple[float, float]:
    """Median and robust standard deviation; NaN while there are too few values."""
    if values.size < max(min_history, 1):
        return np.nan, np.nan
    centre = float(np.median(values))
    deviation = np.abs(values - centre)
    scale = MAD_TO_SIGMA * float(np.median(deviation))
    # A mostly constant series has a MAD of 0 although it moves now and then.
    if scale <= 0:
        scale = MEAN_AD_TO_SIGMA * float(deviation.mean())
    return centre, max(scale, RELATIVE_SCALE_FLOOR * max(1.0, abs(centre)))
