"""Streaming extreme-value thresholds, SPOT and DSPOT; needs numpy.

Written from Siffer, Fouque, Termier and Largouet, "Anomaly Detection in
Streams with Extreme Value Theory", KDD 2017. A GPD fitted to the excesses
over a high initial threshold `t` gives the value `z_q` that a normal point
exceeds with probability `q` (the risk); a point above `z_q` is an anomaly and
leaves the model untouched, a point between `t` and `z_q` is a new peak and
refits the tail. DSPOT runs the same on the distance to the mean of the last
`depth` normal points, so a drifting series keeps a moving threshold.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from detector.gpd import Tail, fit_grimshaw

_REFIT_FRACTION = 64


class Spot:
    """SPOT (depth 0) or DSPOT (depth > 0) on one stream of scores.

    The paper keeps every peak; here only the peaks among the last `window`
    normal points count, so that a long-running stream adapts and a refit
    costs a bounded amount. The first `init_points` values calibrate.
    """

    def __init__(
        self,
        risk: float,
        init_points: int,
        level: float = 0.98,
        depth: int = 0,
        window: int = 20_000,
        max_shape: float | None = None,
    ) -> None:
        if not 0 < risk < 1:
            raise ValueError(f"risk must be in (0, 1), got {risk!r}")
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        self.risk = risk
        self.init_points = init_points
        self.level = level
        self.depth = depth
        self.window = window
        self.max_shape = max_shape

        self._calibration: list[float] = []
        self._recent: deque[float] = deque(maxlen=max(depth, 1))
        self._peaks: deque[tuple[int, float]] = deque()
        self._seen = 0
        self._initial = np.nan
        self._tail = Tail(0.0, 1.0)
        self._alarm = np.inf
        self._unfitted = 0

    @property
    def ready(self) -> bool:
        return np.isfinite(self._initial)

    def update(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flags (0/1) and the alarm threshold in force at each value."""
        x = np.asarray(values, dtype=float)
        flags = np.zeros(x.size, dtype=np.int8)
        limits = np.full(x.size, np.nan)

        start = 0
        while start < x.size and not self.ready:
            self._collect(float(x[start]))
            start += 1
        if start == x.size:
            return flags, limits

        if self.depth:
            self._update_drifting(x, start, flags, limits)
        else:
            self._update_plain(x, start, flags, limits)
        return flags, limits

    def _collect(self, value: float) -> None:
        if self.depth:
            drift = np.mean(self._recent) if self._recent else value
            self._recent.append(value)
            value -= drift
        self._calibration.append(value)
        if len(self._calibration) < self.init_points:
            return

        data = np.asarray(self._calibration)
        self._initial = float(np.quantile(data, self.level))
        above = np.flatnonzero(data > self._initial)
        self._peaks.extend((i + 1, float(data[i] - self._initial)) for i in above)
        self._seen = data.size
        self._calibration = []
        self._refit()

    def _update_plain(
        self, x: np.ndarray, start: int, flags: np.ndarray, limits: np.ndarray
    ) -> None:
        # Values under the initial threshold only count; the loop visits the rest.
        position = start
        for i in np.flatnonzero(x[start:] > self._initial) + start:
            limits[position : i + 1] = self._alarm
            self._seen += i - position
            position = i + 1
            self._observe(float(x[i]), i, flags)
        limits[position:] = self._alarm
        self._seen += x.size - position

    def _update_drifting(
        self, x: np.ndarray, start: int, flags: np.ndarray, limits: np.ndarray
    ) -> None:
        for i in range(start, x.size):
            drift = float(np.mean(self._recent))
            limits[i] = self._alarm + drift
            if self._observe(float(x[i]) - drift, i, flags):
                self._recent.append(float(x[i]))

    def _observe(self, value: float, index: int, flags: np.ndarray) -> bool:
        """Flag, or count and maybe refit; True when the value is normal."""
        self._seen += 1
        normal = value <= self._alarm
        if not normal:
            flags[index] = 1
        if value > self._initial:
            # The paper leaves anomalies out of the peaks; over a long stream
            # that cuts the top off the tail the fit sees, each lower threshold
            # cuts more, and the false-alarm rate creeps up several-fold. An
            # anomaly counts as a peak instead, its excess capped at twice the
            # alarm's, so that one huge outlier cannot blow the tail up.
            cap = 2.0 * (self._alarm - self._initial)
            self._peaks.append((self._seen, min(value - self._initial, cap)))
            self._unfitted += 1
            # Refitting after every peak is the paper's way; once there are
            # hundreds of peaks one more barely moves the fit, so the refit
            # waits for a batch of new peaks (1/64 of them), which keeps the
            # cost per point bounded when a stream sits above `t` for long.
            if self._unfitted * _REFIT_FRACTION >= len(self._peaks):
                self._refit()
        return normal

    def _refit(self) -> None:
        self._unfitted = 0
        while self._peaks and self._peaks[0][0] <= self._seen - self.window:
            self._peaks.popleft()
        if not self._peaks:
            self._alarm = self._initial
            return
        excesses = np.fromiter((y for _, y in self._peaks), dtype=float)
        tail = fit_grimshaw(excesses)
        if self.max_shape is not None and tail.gamma > self.max_shape:
            tail = tail._replace(gamma=self.max_shape, sigma=float(excesses.mean()))
        self._tail = tail
        observed = min(self._seen, self.window)
        probability = min(1.0, self.risk * observed / excesses.size)
        self._alarm = self._initial + self._tail.quantile(probability)
