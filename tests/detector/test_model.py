from __future__ import annotations

import math

import numpy as np
import pytest

from detector.model import RobustModel, Score

SEED = 20240611


def noisy(n: int, level: float = 50.0, sigma: float = 1.0) -> np.ndarray:
    return np.random.default_rng(SEED).normal(level, sigma, n)


def score_all(values, window: int = 288, min_points: int = 30) -> list[Score]:
    return RobustModel(window, min_points, threshold=6.0).update(list(values))


def test_a_point_never_influences_its_own_band_or_earlier_scores() -> None:
    values = noisy(400)
    high, low = values.copy(), values.copy()
    high[300], low[300] = 1e6, -1e6

    first, second = score_all(high), score_all(low)

    # From index 1: the first point's NaN expectation never equals itself.
    assert first[1:300] == second[1:300]
    # Point 300 is judged against the same past either way, whatever its value.
    assert (first[300].expected, first[300].lower, first[300].upper) == (
        second[300].expected,
        second[300].lower,
        second[300].upper,
    )
    assert first[300].decision == second[300].decision == 1


def test_the_band_is_the_median_and_mad_of_the_window_before() -> None:
    values = noisy(400)

    scores = score_all(values, window=288)

    for p in (2, 29, 150, 287, 288, 289, 399):
        past = values[max(0, p - 288) : p]
        median = np.median(past)
        scale = 1.4826 * np.median(np.abs(past - median))
        assert scores[p].expected == pytest.approx(median, rel=1e-12)
        assert scores[p].upper == pytest.approx(median + 6.0 * scale, rel=1e-12)
        assert scores[p].lower == pytest.approx(median - 6.0 * scale, rel=1e-12)


def test_point_by_point_and_batched_updates_agree() -> None:
    values = noisy(700)
    model = RobustModel(288, 30, 6.0)

    one_by_one = [s for v in values for s in model.update([v])]
    in_parts = RobustModel(288, 30, 6.0)
    batched = in_parts.update(values[:5]) + in_parts.update(values[5:])

    assert [s.score for s in one_by_one] == [s.score for s in batched]
    assert one_by_one[1:] == batched[1:]


def test_a_spike_scores_at_least_half_and_normal_points_stay_below() -> None:
    values = noisy(600)
    values[400] += 12.0

    scores = score_all(values)

    assert scores[400].score >= 0.5
    assert scores[400].decision == 1
    assert scores[400].lower < 50.0 < scores[400].upper
    others = [s for i, s in enumerate(scores) if i != 400 and s.warm]
    assert max(s.score for s in others) < 0.5
    assert sum(s.decision for s in others) == 0


def test_score_reaches_half_exactly_where_z_reaches_the_threshold() -> None:
    values = noisy(300)
    values[100:300:7] += np.linspace(0.0, 15.0, len(range(100, 300, 7)))

    for s in score_all(values)[1:]:
        assert (s.score >= 0.5) == (s.z >= 6.0)
        assert s.decision == int(s.warm and s.z >= 6.0)


def test_no_decision_before_min_points_were_seen() -> None:
    values = noisy(60)
    values[10] += 100.0

    scores = score_all(values, min_points=30)

    assert scores[10].z > 6.0
    assert scores[10].decision == 0
    assert [s.warm for s in scores].index(True) == 30


def test_the_first_point_has_no_expectation() -> None:
    first = score_all([42.0])[0]

    assert math.isnan(first.expected)
    assert (first.score, first.decision, first.warm) == (0.0, 0, False)


def test_a_lasting_level_shift_becomes_the_new_normal() -> None:
    values = np.concatenate([noisy(300), noisy(600, level=80.0)])

    scores = score_all(values)

    assert scores[300].decision == 1
    settled = scores[300 + 288 :]
    assert sum(s.decision for s in settled) == 0
    assert abs(settled[-1].expected - 80.0) < 1.0


def test_a_flat_series_flags_any_change_without_dividing_by_zero() -> None:
    values = [5.0] * 100 + [5.0, 6.0]

    scores = score_all(values)

    assert scores[100].z == 0.0
    assert scores[101].decision == 1
    assert math.isfinite(scores[101].z)


def test_a_mostly_constant_quantised_series_is_not_flagged() -> None:
    # An integer temperature that sits on 45 and touches 46 now and then: the
    # MAD is 0 here, so the scale must come from elsewhere.
    rng = np.random.default_rng(SEED)
    values = 45.0 + (rng.random(500) < 0.2)

    scores = score_all(values)

    assert sum(s.decision for s in scores) == 0
