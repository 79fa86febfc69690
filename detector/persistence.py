"""Evidence that fades over time instead of vanishing with the next point.

The persisted value at t is the largest (evidence at t-k) - decay * k over the
last `points` points: an anomaly's evidence is still there, fading linearly,
while its episode lasts, so the points after its start rank with it. Needs
numpy.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class Persistence:
    """max over k < points of evidence[t - k] - decay * k, never below 0."""

    def __init__(self, points: int, decay: float) -> None:
        self.points = points
        self.decay = decay
        self._count = 0
        self._lifted = np.empty(0)

    def update(self, evidence: np.ndarray) -> np.ndarray:
        """Persisted evidence per point; NaN evidence counts as 0."""
        current = np.nan_to_num(np.asarray(evidence, dtype=float), nan=0.0)
        # evidence[i] + decay * i, so the window max minus decay * t is the
        # answer; i counts from the stream's start, whatever the batch.
        index = self._count + np.arange(current.size)
        lifted = current + self.decay * index
        gap = np.full(self.points - 1 - self._lifted.size, -np.inf)
        data = np.concatenate([gap, self._lifted, lifted])
        windows = sliding_window_view(data, self.points)
        tail = data[-(self.points - 1) :] if self.points > 1 else data[:0]
        self._lifted = tail[np.isfinite(tail)]
        self._count += current.size
        return np.maximum(windows.max(axis=1) - self.decay * index, 0.0)
