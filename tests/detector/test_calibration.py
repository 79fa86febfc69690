from __future__ import annotations

import math

import numpy as np
import pytest

from detector.calibration import EXTRAPOLATION_DECADES, TailSurprise

SEED = 20240611


def surprise(**overrides) -> TailSurprise:
    settings = {
        "history": 1000,
        "refit": 50,
        "level": 0.95,
        "two_sided": False,
        "min_history": 100,
    } | overrides
    return TailSurprise(**settings)


def test_nothing_is_scored_before_min_history() -> None:
    out = surprise().update(np.arange(150.0))

    assert np.isnan(out[:100]).all()
    assert np.isfinite(out[100:]).all()


def test_surprise_grows_with_the_value_beyond_the_data() -> None:
    model = surprise()
    model.update(np.random.default_rng(SEED).normal(size=1000))

    out = model.update(np.array([0.0, 2.0, 3.0, 5.0, 8.0]))

    assert out[0] < 0.5
    assert list(out) == sorted(out)
    assert out[-1] > out[-2] > 3.0


def test_the_fitted_tail_cannot_claim_more_than_the_history_supports() -> None:
    model = surprise()
    model.update(np.random.default_rng(SEED).normal(size=1000))

    (extreme,) = model.update(np.array([1e9]))

    assert extreme == pytest.approx(math.log10(1001) + EXTRAPOLATION_DECADES)


def test_two_sided_scores_both_tails() -> None:
    model = surprise(two_sided=True)
    model.update(np.random.default_rng(SEED).normal(size=1000))

    low, middle, high = model.update(np.array([-6.0, 0.0, 6.0]))

    assert middle < 0.5
    assert low > 3.0 and high > 3.0


def test_batches_and_single_values_agree() -> None:
    x = np.random.default_rng(SEED).gamma(2.0, size=3000)

    whole = surprise().update(x)
    model = surprise()
    parts = np.concatenate([model.update(x[i : i + 37]) for i in range(0, 3000, 37)])

    np.testing.assert_array_equal(whole, parts)


def test_repeated_values_tie_with_their_stored_copies() -> None:
    # A quantised series stored in single precision: 0.1 must meet 0.1.
    model = surprise(dtype=np.float32)
    model.update(np.tile([0.1, 0.2, 0.3], 400))

    (common,) = model.update(np.array([0.1]))

    assert common < 0.5
