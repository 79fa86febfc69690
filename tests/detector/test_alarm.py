from __future__ import annotations

import numpy as np

from detector.alarm import Alarm
from detector.persistence import Persistence
from detector.spot import Spot

SEED = 20240611


def quiet_scores(n: int) -> np.ndarray:
    return np.abs(np.random.default_rng(SEED).normal(size=n))


def test_an_episode_raises_one_alarm_that_holds_while_it_lasts() -> None:
    s = quiet_scores(3000)
    s[2000:2050] = 20.0

    decisions, _ = Alarm(Spot(1e-3, 1000), hysteresis=0.5, quiet_points=100).update(s)

    runs = np.flatnonzero(np.diff(np.concatenate([[0], decisions, [0]])) == 1)
    assert decisions[2000:2050].all()
    assert len(runs) == 1


def test_nothing_new_fires_during_the_quiet_time() -> None:
    s = quiet_scores(3000)
    s[[2000, 2050, 2400]] = 20.0

    decisions, _ = Alarm(Spot(1e-3, 1000), hysteresis=1.0, quiet_points=200).update(s)

    assert decisions[2000] == 1
    assert decisions[2050] == 0
    assert decisions[2400] == 1


def test_batches_and_single_points_agree() -> None:
    s = quiet_scores(3000)
    s[[1500, 1510, 2500]] = 20.0

    whole = Alarm(Spot(1e-3, 1000), 0.5, 100).update(s)[0]
    alarm = Alarm(Spot(1e-3, 1000), 0.5, 100)
    parts = np.concatenate([alarm.update(s[i : i + 9])[0] for i in range(0, 3000, 9)])

    np.testing.assert_array_equal(whole, parts)


def test_persistence_fades_linearly_and_forgets_after_its_span() -> None:
    evidence = np.zeros(20)
    evidence[5] = 3.0

    out = Persistence(points=10, decay=0.5).update(evidence)

    np.testing.assert_allclose(out[5:11], [3.0, 2.5, 2.0, 1.5, 1.0, 0.5])
    assert out[15] == 0.0 and out[4] == 0.0


def test_persistence_batches_and_single_points_agree() -> None:
    evidence = quiet_scores(500)
    evidence[::50] = np.nan

    whole = Persistence(30, 0.1).update(evidence)
    model = Persistence(30, 0.1)
    parts = np.concatenate(
        [model.update(evidence[i : i + 4]) for i in range(0, 500, 4)]
    )

    np.testing.assert_allclose(whole, parts, atol=1e-9)
