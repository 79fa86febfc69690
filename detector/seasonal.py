"""Daily and weekly profiles of one series, kept as per-bucket ranges; needs numpy.

Time is cut into buckets (5 minutes by default, never finer than the step);
each bucket keeps the lowest and highest value seen in it. A new point is
compared with the same time of day on the previous days and the same time of
week on the previous weeks, a few buckets either side to allow for jitter:
its distance to the nearest of those ranges says how new the value is at that
time, and the median of their midpoints is the seasonal expectation.
"""

from __future__ import annotations

import numpy as np

DAY_SECONDS = 86_400
WEEK_SECONDS = 7 * DAY_SECONDS


class SeasonalProfile:
    """Ranges per bucket over the last `days` days and `weeks` weeks."""

    def __init__(
        self, bucket_seconds: float, days: int, weeks: int, jitter_buckets: int
    ) -> None:
        if DAY_SECONDS % bucket_seconds:
            raise ValueError(
                f"bucket_seconds must divide a day, got {bucket_seconds!r}"
            )
        self.bucket_seconds = float(bucket_seconds)
        per_day = int(DAY_SECONDS // bucket_seconds)
        lags = {
            k * per_day * period + j
            for period, count in ((1, days), (7, weeks))
            for k in range(1, count + 1)
            for j in range(-jitter_buckets, jitter_buckets + 1)
        }
        self._lags = np.array(sorted(lags), dtype=np.int64)
        # Points closer than this many buckets never look at each other, so a
        # batch can be scored in slices of that length with one lookup each.
        self._horizon = int(self._lags.min()) if lags else 1
        size = int(self._lags.max()) + 1 if lags else 1
        # No bucket id is this small, so an empty slot never matches.
        self._ids = np.full(size, np.iinfo(np.int64).min, dtype=np.int64)
        self._low = np.zeros(size, dtype=np.float32)
        self._high = np.zeros(size, dtype=np.float32)

    @property
    def enabled(self) -> bool:
        return self._lags.size > 0

    def update(
        self, timestamps: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Distance to the nearest seasonal range and the seasonal expectation.

        Both are NaN for a point with no earlier day or week to compare with.
        """
        x = np.asarray(values, dtype=float)
        ids = np.floor(np.asarray(timestamps, dtype=float) / self.bucket_seconds)
        ids = ids.astype(np.int64)
        distance = np.full(x.size, np.nan)
        expected = np.full(x.size, np.nan)
        if not self.enabled or x.size == 0:
            return distance, expected

        start = 0
        while start < x.size:
            stop = start + int(np.searchsorted(ids[start:], ids[start] + self._horizon))
            stop = max(stop, start + 1)
            distance[start:stop], expected[start:stop] = self._lookup(
                ids[start:stop], x[start:stop]
            )
            self._store(ids[start:stop], x[start:stop])
            start = stop
        return distance, expected

    def _lookup(self, ids: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wanted = ids[:, None] - self._lags[None, :]
        slots = wanted % self._ids.size
        valid = self._ids[slots] == wanted
        low = self._low[slots].astype(float)
        high = self._high[slots].astype(float)

        gap = np.maximum(np.maximum(low - x[:, None], x[:, None] - high), 0.0)
        gap = np.where(valid, gap, np.inf)
        distance = gap.min(axis=1)
        distance[~valid.any(axis=1)] = np.nan

        middle = np.where(valid, 0.5 * (low + high), np.nan)
        expected = np.full(x.size, np.nan)
        seen = valid.any(axis=1)
        if seen.any():
            expected[seen] = np.nanmedian(middle[seen], axis=1)
        return distance, expected

    def _store(self, ids: np.ndarray, x: np.ndarray) -> None:
        slots = ids % self._ids.size
        fresh = self._ids[slots] != ids
        self._ids[slots[fresh]] = ids[fresh]
        self._low[slots[fresh]] = np.inf
        self._high[slots[fresh]] = -np.inf
        np.minimum.at(self._low, slots, x.astype(np.float32))
        np.maximum.at(self._high, slots, x.astype(np.float32))
