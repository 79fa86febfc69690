from __future__ import annotations

import math

import numpy as np
import pytest

from detector.config import EnsembleConfig, ModelConfig
from detector.ensemble import EnsembleModel
from detector.factory import make_model
from detector.model import RobustModel

SEED = 20240611
STEP = 300.0
DAY = int(86400 / STEP)


def daily_series(days: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    t = 1_700_000_000.0 + STEP * np.arange(days * DAY)
    noise = np.random.default_rng(seed).normal(0.0, 1.0, t.size)
    return t, 50.0 + 10.0 * np.sin(2 * np.pi * t / 86400) + noise


def model() -> EnsembleModel:
    return EnsembleModel(ModelConfig(), STEP)


def test_the_factory_builds_the_configured_kind() -> None:
    assert isinstance(make_model(ModelConfig(kind="robust"), STEP), RobustModel)
    assert isinstance(make_model(ModelConfig(), STEP), EnsembleModel)


def test_a_point_never_influences_its_own_or_earlier_scores() -> None:
    t, x = daily_series(6)
    high, low = x.copy(), x.copy()
    high[1500], low[1500] = 1e6, -1e6

    first, second = model().update(high, t), model().update(low, t)

    # repr, since NaN (no expectation yet) never equals itself.
    assert repr(first[:1500]) == repr(second[:1500])
    assert (first[1500].expected, first[1500].upper) == (
        second[1500].expected,
        second[1500].upper,
    )


def test_batches_and_single_points_agree() -> None:
    t, x = daily_series(5)

    whole = model().update(x, t)
    parts = model()
    pieces = [
        s
        for i in range(0, x.size, 97)
        for s in parts.update(x[i : i + 97], t[i : i + 97])
    ]

    assert [s.score for s in whole] == pytest.approx(
        [s.score for s in pieces], abs=1e-9
    )
    assert [s.decision for s in whole] == [s.decision for s in pieces]


def test_no_decision_before_the_model_is_warm() -> None:
    t, x = daily_series(6)
    x[300] += 200.0

    scores = model().update(x, t)

    first_warm = [s.warm for s in scores].index(True)
    assert 576 < first_warm < 1500
    assert all(s.decision == 0 for s in scores[:first_warm])


def test_the_evidence_waits_for_every_core_view_to_calibrate() -> None:
    t, x = daily_series(6)
    x[400] += 200.0

    scores = model().update(x, t)

    # At point 400 only shift and discord have calibrated; value and burst
    # need two days of 5-minute points. A spike then must not reach SPOT's
    # first batch, which fixes its initial threshold.
    first = next(i for i, s in enumerate(scores) if s.score > 0)
    assert scores[400].score == 0.0
    assert 2 * DAY <= first < 3 * DAY


def test_a_short_step_does_not_wait_a_day_for_the_seasonal_view() -> None:
    step = 15.0
    t = 1_700_000_000.0 + step * np.arange(3000)
    x = 50.0 + np.random.default_rng(SEED).normal(0.0, 1.0, t.size)

    scores = EnsembleModel(ModelConfig(), step).update(x, t)

    # A day is 5,760 points at this step; the seasonal view joins later.
    assert any(s.warm for s in scores)


def test_a_spike_on_a_daily_cycle_is_decided_and_calm_days_are_not() -> None:
    t, x = daily_series(10)
    x[2600] += 40.0

    scores = model().update(x, t)

    decided = [i for i, s in enumerate(scores) if s.decision]
    assert 2600 in decided
    assert all(2600 <= i < 2600 + DAY for i in decided)
    assert scores[2600].score > 0.5 > max(s.score for s in scores[1500:2590])


def test_a_lasting_level_shift_becomes_the_new_normal() -> None:
    t, x = daily_series(16)
    x[2000:] += 30.0

    scores = model().update(x, t)

    assert any(s.decision for s in scores[2000 : 2000 + DAY])
    settled = scores[2000 + 8 * DAY :]
    assert sum(s.decision for s in settled) == 0
    new_level = 80.0 + 10.0 * math.sin(2 * math.pi * t[-1] / 86400)
    assert settled[-1].expected == pytest.approx(new_level, abs=3.0)


def test_the_shape_views_are_not_scaled_by_the_last_days_spread() -> None:
    # A departure that lasts widens the last day's spread; dividing the
    # seasonal and discord distances by it let such a departure shrink its
    # own score. Two models fed the same points, told of spreads ten times
    # apart, must give those views the same raw scores.
    t, x = daily_series(3)
    calm, wide = model(), model()
    ones = np.ones(x.size)

    a = calm._raw_scores(t, x, ones, None)
    b = wide._raw_scores(t, x, 10.0 * ones, None)

    for view in ("seasonal", "discord"):
        assert np.isfinite(a[view]).any()
        np.testing.assert_array_equal(a[view], b[view])


def test_the_band_is_centred_on_the_seasonal_expectation() -> None:
    t, x = daily_series(3)

    s = model().update(x, t)[-1]

    daily = 50.0 + 10.0 * math.sin(2 * math.pi * t[-1] / 86400)
    assert s.expected == pytest.approx(daily, abs=1.5)
    assert s.lower < s.value < s.upper


def test_a_flat_series_is_not_flagged_and_does_not_divide_by_zero() -> None:
    t = STEP * np.arange(2000)
    scores = model().update(np.full(2000, 5.0), t)

    assert sum(s.decision for s in scores) == 0
    assert all(math.isfinite(s.score) for s in scores)


def test_without_timestamps_the_step_is_assumed() -> None:
    _, x = daily_series(2)

    scores = model().update(x)

    assert len(scores) == x.size


def test_forecasts_join_the_evidence() -> None:
    t, x = daily_series(5)
    forecasts = np.full(x.size, np.nan)
    forecasts[DAY:] = x[DAY:]  # a perfect forecaster: no news from it

    with_forecast = model().update(x, t, forecasts)
    without = model().update(x, t)

    assert [s.score for s in with_forecast] != [s.score for s in without]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="risk"):
        EnsembleConfig(risk=1.5)
    with pytest.raises(ValueError, match="hysteresis"):
        EnsembleConfig(hysteresis=0.0)
