from __future__ import annotations

import numpy as np
import pytest

from detector.spot import Spot

SEED = 20240611


def normal(n: int) -> np.ndarray:
    return np.random.default_rng(SEED).normal(size=n)


def test_not_ready_and_silent_while_calibrating() -> None:
    spot = Spot(1e-3, init_points=500)

    flags, limits = spot.update(normal(499))

    assert not spot.ready
    assert flags.sum() == 0
    assert np.isnan(limits).all()


def test_the_false_alarm_rate_is_near_the_risk() -> None:
    x = normal(60_000)
    spot = Spot(1e-3, init_points=2000)

    flags, limits = spot.update(x)

    rate = flags[2000:].mean()
    assert 0.5e-3 < rate < 2e-3
    # The 1e-3 upper quantile of a standard normal is 3.09.
    assert limits[-1] == pytest.approx(3.09, abs=0.25)


def test_an_outlier_is_flagged() -> None:
    x = normal(3000)
    x[2500] = 10.0

    flags, _ = Spot(1e-4, init_points=1000).update(x)

    assert flags[2500] == 1


def test_batches_and_single_points_agree() -> None:
    x = normal(5000)

    whole = Spot(1e-3, 1000).update(x)[0]
    spot = Spot(1e-3, 1000)
    parts = np.concatenate(
        [spot.update(x[i : i + 333])[0] for i in range(0, 5000, 333)]
    )

    assert (whole == parts).all()


def test_dspot_follows_a_drift_that_spot_flags() -> None:
    x = normal(6000) + np.linspace(0.0, 30.0, 6000)

    spot_flags, _ = Spot(1e-3, 1000).update(x)
    dspot_flags, _ = Spot(1e-3, 1000, depth=20).update(x)

    # SPOT keeps raising alarms as the level climbs past what it calibrated
    # on; DSPOT judges each point against the recent mean instead.
    assert spot_flags[1000:].mean() > 10 * 1e-3
    assert dspot_flags[1000:].mean() < 2e-3


def test_a_constant_start_does_not_stall() -> None:
    # Every later point is a peak over the initial threshold 0: the refits are
    # batched, so this stays quick.
    x = np.concatenate([np.zeros(600), np.abs(normal(20_000))])

    flags, limits = Spot(1e-2, 576).update(x)

    assert np.isfinite(limits[600:]).all()
    assert flags.mean() < 0.05


@pytest.mark.parametrize("risk", [0.0, 1.0])
def test_risk_must_be_a_probability(risk: float) -> None:
    with pytest.raises(ValueError, match="risk"):
        Spot(risk, 100)
