"""Deterministic usage series for the optimizer's tests."""

from __future__ import annotations

import numpy as np

from detector.optimizer.resources import HOUR, ResourceSpec

STEP = 60.0
MEMORY = ResourceSpec("memory", "memory", "bytes", None, 3 * HOUR, HOUR, STEP)
CPU = ResourceSpec("cpu", "cpu", "% of cores", 100.0, 3 * HOUR, HOUR, STEP)


def wave(hours: float, start: float = 0.0, level: float = 50.0, seed: int = 0):
    """A daily-ish wave with seeded bursts: (timestamps, readings)."""
    t = start + np.arange(0.0, hours * HOUR, STEP)
    rng = np.random.default_rng(seed)
    bursts = rng.random(t.size) < 0.02
    u = level * (1 + 0.3 * np.sin(t / 5000.0)) + bursts * level * 0.5
    return t, u


def steps(values: list[float], minutes_each: int, start: float = 0.0):
    """Readings that hold each value for `minutes_each` minutes in turn."""
    u = np.repeat(np.asarray(values, dtype=float), minutes_each)
    t = start + STEP * np.arange(u.size)
    return t, u
