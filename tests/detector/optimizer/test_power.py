from __future__ import annotations

import numpy as np
import pytest

from detector.optimizer.config import PowerConfig
from detector.optimizer.power import NO_LIMIT, NO_RANGE, TOO_SHORT, advise
from detector.optimizer.resources import HOUR

GPU = (("instance", "h"), ("gpu", "0"), ("uuid", "GPU-1"))
CONFIG = PowerConfig(warmup_seconds=HOUR, percentile=0.99, headroom=0.1)


def draw(watts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return 60.0 * np.arange(watts.size), watts


def test_a_gpu_well_below_its_limit_gets_a_lower_cap() -> None:
    t, w = draw(np.full(120, 200.0))

    advice = advise(CONFIG, GPU, t, w, limit=400.0, low=150.0, high=450.0)

    assert not isinstance(advice, str)
    assert advice.target == 220.0
    assert advice.lower <= advice.target <= advice.upper <= 400.0
    assert advice.budget_savings_watts == 180.0
    assert advice.draw_savings_watts == 0.0


def test_an_idle_gpu_gets_the_lowest_allowed_cap() -> None:
    t, w = draw(np.full(120, 30.0))

    advice = advise(CONFIG, GPU, t, w, limit=400.0, low=150.0, high=450.0)

    assert not isinstance(advice, str)
    assert advice.target == advice.lower == 150.0


def test_a_busy_gpu_keeps_its_limit() -> None:
    t, w = draw(np.full(120, 395.0))

    advice = advise(CONFIG, GPU, t, w, limit=400.0, low=150.0, high=450.0)

    assert not isinstance(advice, str)
    assert advice.target == 400.0
    assert advice.budget_savings_watts == 0.0


def test_clipped_draw_is_the_expected_saving() -> None:
    watts = np.full(120, 200.0)
    watts[:2] = 330.0  # two readings above the p99 cap
    t, w = draw(watts)

    advice = advise(CONFIG, GPU, t, w, limit=400.0, low=100.0, high=450.0)

    assert not isinstance(advice, str)
    assert advice.draw_savings_watts == pytest.approx(
        np.maximum(watts - advice.target, 0).mean()
    )


@pytest.mark.parametrize(
    ("limit", "low", "high", "minutes", "state"),
    [
        (None, 100.0, 450.0, 120, NO_LIMIT),
        (400.0, None, 450.0, 120, NO_RANGE),
        (400.0, 100.0, None, 120, NO_RANGE),
        (400.0, 500.0, 450.0, 120, NO_RANGE),
        (400.0, 100.0, 450.0, 30, TOO_SHORT),
    ],
)
def test_missing_inputs_are_reported_not_guessed(
    limit, low, high, minutes, state
) -> None:
    t, w = draw(np.full(minutes, 200.0))

    assert advise(CONFIG, GPU, t, w, limit, low, high) == state
