"""A streaming robust model of one series: rolling median and MAD; needs numpy.

Each point is scored against the points before it only, then joins the window,
so a score never depends on its own point or on anything later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# 1.4826 * MAD and 1.2533 * mean absolute deviation both estimate the standard
# deviation of normally distributed data, so a z computed from either reads the
# same as a classical z-score.
MAD_TO_SIGMA = 1.4826
MEAN_AD_TO_SIGMA = 1.2533

# Floor on the scale, relative to the median's size: far above float rounding
# noise (about 1e-16 relative), far below any change a person would care about.
RELATIVE_SCALE_FLOOR = 1e-6

# Points scored at once; bounds the temporary (points x window) matrices to a
# few megabytes when a long batch arrives, such as a catch-up after an outage.
_BLOCK_ROWS = 1024


@dataclass(frozen=True, slots=True)
class Score:
    """What the model made of one point."""

    value: float
    expected: float
    lower: float
    upper: float
    z: float
    score: float
    decision: int
    warm: bool


class RobustModel:
    """Rolling median/MAD scorer for one series.

    A level shift that persists becomes the new normal once it fills more than
    half of the window, since the median then sits on the new level.
    """

    def __init__(self, window: int, min_points: int, threshold: float) -> None:
        self.window = window
        self.min_points = min_points
        self.threshold = threshold
        self._history = np.empty(0)
        self._seen = 0

    @property
    def points_seen(self) -> int:
        return self._seen

    @property
    def warm(self) -> bool:
        return self._seen >= self.min_points

    def recent(self, count: int) -> np.ndarray:
        return self._history[-count:]

    def history(self) -> np.ndarray:
        return self._history.copy()

    def update(
        self,
        values: Sequence[float] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray | None = None,
        forecasts: np.ndarray | None = None,
    ) -> list[Score]:
        """Score each value against the window before it, then add it.

        Timestamps and forecasts are accepted for a common model interface;
        this model uses neither.
        """
        new = np.asarray(values, dtype=float)
        if new.size == 0:
            return []

        data = np.concatenate([self._history, new])
        first = self._history.size
        scores: list[Score] = []

        # The very first point of a series has nothing to be compared with.
        if first == 0:
            scores.append(_unscored(data[0]))
            first = 1

        # Left-padding with +inf gives every point a full-width history row;
        # sorted, the padding goes to the end, after the real values.
        padded = np.concatenate([np.full(self.window, np.inf), data])
        for start in range(first, data.size, _BLOCK_ROWS):
            stop = min(start + _BLOCK_ROWS, data.size)
            median, scale, seen = _centre_and_scale(padded, start, stop, self.window)
            scores += self._scores(data[start:stop], median, scale, seen)

        self._history = data[-self.window :].copy()
        self._seen += new.size
        return scores

    def _scores(
        self,
        values: np.ndarray,
        median: np.ndarray,
        scale: np.ndarray,
        seen: np.ndarray,
    ) -> list[Score]:
        z = np.abs(values - median) / scale
        # z/(z+threshold) maps [0, inf) onto [0, 1) and crosses 0.5 exactly at
        # the threshold, so "score >= 0.5" and the decision agree once warm.
        score = z / (z + self.threshold)
        half_band = self.threshold * scale
        warm = seen >= self.min_points

        return [
            Score(
                value=value,
                expected=centre,
                lower=centre - half,
                upper=centre + half,
                z=zi,
                score=si,
                decision=int(wi and zi >= self.threshold),
                warm=wi,
            )
            for value, centre, half, zi, si, wi in zip(
                values.tolist(),
                median.tolist(),
                half_band.tolist(),
                z.tolist(),
                score.tolist(),
                warm.tolist(),
                strict=True,
            )
        ]


def _unscored(value: float) -> Score:
    nan = float("nan")
    return Score(float(value), nan, nan, nan, 0.0, 0.0, 0, False)


def _centre_and_scale(
    padded: np.ndarray, start: int, stop: int, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, robust scale and history length for points start..stop-1.

    `padded` is the data after `window` copies of +inf, so that row p of its
    sliding windows is point p's history, data[p-window:p], padded while short.
    """
    rows = sliding_window_view(padded, window)[start:stop]
    seen = np.minimum(np.arange(start, stop), window)
    median = _sorted_median(np.sort(rows, axis=1), seen)

    deviation = np.abs(rows - median[:, np.newaxis])
    scale = MAD_TO_SIGMA * _sorted_median(np.sort(deviation, axis=1), seen)

    # Quantised series (integer temperatures, percentages) often have more than
    # half their points on one value, which makes the MAD 0 although the series
    # moves; the mean absolute deviation still sees those moves.
    mean_ad = np.where(np.isfinite(deviation), deviation, 0.0).sum(axis=1) / seen
    scale = np.where(scale > 0, scale, MEAN_AD_TO_SIGMA * mean_ad)

    # Only a window of identical values is left at 0; there any change is news,
    # and the floor turns it into a large but finite z.
    floor = RELATIVE_SCALE_FLOOR * np.maximum(1.0, np.abs(median))
    return median, np.maximum(scale, floor), seen


def _sorted_median(ordered: np.ndarray, counts: np.ndarray) -> np.ndarray:
    rows = np.arange(ordered.shape[0])
    return (ordered[rows, (counts - 1) // 2] + ordered[rows, counts // 2]) / 2
