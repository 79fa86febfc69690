"""Fault shapes from window values."""

from __future__ import annotations

import pytest

from detector.diagnosis import pattern

BASE = [0.3, 0.4, 0.35, 0.5, 0.3, 0.45]


@pytest.mark.parametrize(
    ("window", "quantity", "shape"),
    [
        ([0.0] * 10, pattern.UTILIZATION, pattern.STUCK_IDLE),
        ([1.0] * 10, pattern.UTILIZATION, pattern.STUCK_BUSY),
        ([0.9, 0.95, 0.85, 0.97, 0.9, 0.93], pattern.UTILIZATION, pattern.RUNAWAY),
        ([0.1, 0.05, 0.12, 0.1], pattern.UTILIZATION, pattern.DROP),
        ([float(v) for v in range(10, 30, 2)], pattern.MEMORY, pattern.MEMORY_LEAK),
        ([20.0, 21, 20, 20.5, 21, 20, 20.2, 20.8], pattern.MEMORY, pattern.RUNAWAY),
        ([], pattern.MEMORY, pattern.UNKNOWN),
    ],
)
def test_shapes(window, quantity, shape):
    baseline = BASE if quantity == pattern.UTILIZATION else [5.0, 5.2, 4.9, 5.1]

    assert pattern.classify_shape(baseline, window, quantity) == shape
