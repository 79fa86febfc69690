from __future__ import annotations

import numpy as np
import pytest

from detector.gpd import Tail, fit_grimshaw, fit_moments

SEED = 20240611


def gpd_sample(gamma: float, sigma: float, n: int) -> np.ndarray:
    u = np.random.default_rng(SEED).random(n)
    if gamma == 0:
        return -sigma * np.log(u)
    return sigma / gamma * (u ** (-gamma) - 1.0)


@pytest.mark.parametrize(("gamma", "sigma"), [(0.25, 1.0), (-0.2, 2.0), (0.0, 0.5)])
def test_grimshaw_recovers_the_parameters_of_a_large_sample(gamma, sigma) -> None:
    fitted = fit_grimshaw(gpd_sample(gamma, sigma, 20_000))

    assert fitted.gamma == pytest.approx(gamma, abs=0.05)
    assert fitted.sigma == pytest.approx(sigma, rel=0.05)


def test_moments_agree_with_grimshaw_on_a_light_tail() -> None:
    sample = gpd_sample(0.1, 1.0, 20_000)

    assert fit_moments(sample).gamma == pytest.approx(
        fit_grimshaw(sample).gamma, abs=0.05
    )


def test_quantile_inverts_survival() -> None:
    for tail in (Tail(0.3, 2.0), Tail(-0.2, 1.0), Tail(0.0, 1.5)):
        y = tail.quantile(1e-3)
        assert tail.survival(np.array([y]))[0] == pytest.approx(1e-3, rel=1e-9)


def test_a_bounded_tail_has_zero_survival_past_its_end() -> None:
    tail = Tail(-0.5, 1.0)  # end point at sigma / -gamma = 2

    assert tail.survival(np.array([1.0, 2.5])).tolist() == [0.25, 0.0]


def test_degenerate_samples_fall_back_to_an_exponential() -> None:
    assert fit_grimshaw(np.array([1.0, 1.0, 1.0])) == Tail(0.0, 1.0)
    assert fit_grimshaw(np.array([])).gamma == 0.0
