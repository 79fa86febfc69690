"""A decaying histogram with exponential buckets, as the Kubernetes VPA keeps one.

The design is the VPA recommender's (kubernetes/autoscaler, vertical-pod-
autoscaler/pkg/recommender/util): buckets grow by 5%, a sample's weight doubles
every half-life so that newer samples count more, and a percentile is read as
the end of the bucket where the cumulative weight reaches it.
"""

from __future__ import annotations

import math

import numpy as np

BUCKET_GROWTH = 1.05
# Past this exponent the weights are rescaled to a new reference time, so that
# 2^exponent stays far from overflowing a float.
MAX_DECAY_EXPONENT = 100.0


class DecayingHistogram:
    """Weighted samples in buckets [start_k, start_k+1), newest weighing most."""

    def __init__(self, first_bucket: float, half_life: float) -> None:
        if not first_bucket > 0:
            raise ValueError(f"first_bucket must be > 0, got {first_bucket!r}")
        if not half_life > 0:
            raise ValueError(f"half_life must be > 0, got {half_life!r}")
        self._first = first_bucket
        self._half_life = half_life
        self._weights: dict[int, float] = {}
        self._reference: float | None = None

    def bucket(self, value: float) -> int:
        """The index of the bucket holding `value` (values <= 0 go to bucket 0)."""
        if value <= 0:
            return 0
        ratio = 1 + value * (BUCKET_GROWTH - 1) / self._first
        return int(math.floor(math.log(ratio) / math.log(BUCKET_GROWTH)))

    def bucket_start(self, index: int) -> float:
        return self._first * (BUCKET_GROWTH**index - 1) / (BUCKET_GROWTH - 1)

    def add(self, value: float, weight: float, timestamp: float) -> None:
        self._shift(timestamp, weight, value, +1.0)

    def subtract(self, value: float, weight: float, timestamp: float) -> None:
        self._shift(timestamp, weight, value, -1.0)

    def percentile(self, p: float) -> float:
        """The end of the bucket where the cumulative weight reaches p; 0 if empty."""
        live = sorted((k, w) for k, w in self._weights.items() if w > 0)
        if not live:
            return 0.0
        total = sum(w for _, w in live)
        cumulative = np.cumsum([w for _, w in live])
        at = int(np.searchsorted(cumulative, p * total, side="left"))
        return self.bucket_start(live[min(at, len(live) - 1)][0] + 1)

    def _shift(
        self, timestamp: float, weight: float, value: float, sign: float
    ) -> None:
        if self._reference is None:
            self._reference = timestamp
        exponent = (timestamp - self._reference) / self._half_life
        if exponent > MAX_DECAY_EXPONENT:
            scale = 2.0**-exponent
            self._weights = {k: w * scale for k, w in self._weights.items()}
            self._reference = timestamp
            exponent = 0.0
        key = self.bucket(value)
        scaled = weight * 2.0**exponent
        updated = self._weights.get(key, 0.0) + sign * scaled
        # Subtracting a sample can leave float dust; dust is no weight.
        self._weights[key] = updated if updated > 1e-9 * scaled else 0.0
