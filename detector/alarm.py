"""The 0/1 decision: SPOT on a score stream, with hysteresis and a quiet time.

SPOT (detector.spot) says when a score is extreme for this stream; the score
must also reach an absolute `floor`, since on a calm series SPOT's threshold
sits at the top of what calm produces and a new record would otherwise alarm.
An alarm then stays on while the score holds above `hysteresis` times the
threshold it crossed (and the floor), so one episode gives one alarm rather
than a flicker; once it ends, no new alarm starts for `quiet_points` points,
as an episode's aftershocks are the same news again.
"""

from __future__ import annotations

import numpy as np

from detector.spot import Spot


class Alarm:
    """Turns a stream of scores into decisions, batch by batch."""

    def __init__(
        self, spot: Spot, hysteresis: float, quiet_points: int, floor: float = 0.0
    ) -> None:
        self.spot = spot
        self.hysteresis = hysteresis
        self.quiet_points = quiet_points
        self.floor = floor
        self._count = 0
        self._active = False
        self._hold = np.inf
        self._quiet_until = 0

    @property
    def ready(self) -> bool:
        return self.spot.ready

    def update(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decisions and SPOT's threshold (NaN while it calibrates) per score."""
        s = np.asarray(scores, dtype=float)
        flags, limits = self.spot.update(s)
        flags = flags & (s >= self.floor)
        decisions = np.zeros(s.size, dtype=np.int8)

        i = 0
        while i < s.size:
            if self._active:
                below = np.flatnonzero(s[i:] < self._hold)
                end = i + int(below[0]) if below.size else s.size
                decisions[i:end] = 1
                if end == s.size:
                    break
                self._active = False
                self._quiet_until = self._count + end + self.quiet_points
                i = end
                continue

            first = max(i, self._quiet_until - self._count)
            raised = np.flatnonzero(flags[first:]) if first < s.size else []
            if len(raised) == 0:
                break
            i = first + int(raised[0])
            self._active = True
            self._hold = max(self.hysteresis * limits[i], self.floor)
            decisions[i] = 1
            i += 1

        self._count += s.size
        return decisions, limits
