from __future__ import annotations

import numpy as np
import pytest

from detector.seasonal import DAY_SECONDS, SeasonalProfile

STEP = 300.0
PER_DAY = int(DAY_SECONDS / STEP)


def daily(days: int) -> tuple[np.ndarray, np.ndarray]:
    t = STEP * np.arange(days * PER_DAY)
    return t, 10.0 + 5.0 * np.sin(2 * np.pi * t / DAY_SECONDS)


def profile(**overrides) -> SeasonalProfile:
    settings = {"bucket_seconds": STEP, "days": 3, "weeks": 0, "jitter_buckets": 1}
    return SeasonalProfile(**(settings | overrides))


def test_the_first_day_has_nothing_to_compare_with() -> None:
    t, x = daily(1)

    distance, expected = profile().update(t, x)

    # The day's last bucket already meets the first one of the same day,
    # one bucket of jitter away from a whole day.
    assert np.isnan(distance[:-1]).all() and np.isnan(expected[:-1]).all()


def test_a_repeating_day_is_no_news() -> None:
    t, x = daily(3)

    distance, expected = profile().update(t, x)

    assert np.nanmax(distance[PER_DAY:]) < 0.2
    np.testing.assert_allclose(expected[PER_DAY:], x[PER_DAY:], atol=0.2)


def test_a_spike_that_happens_every_day_at_the_same_time_is_no_news() -> None:
    t, x = daily(4)
    spikes = np.arange(4) * PER_DAY + 100
    x[spikes] += 50.0
    x[-PER_DAY + 101] += 50.0  # a minute's jitter: one bucket later

    distance, _ = profile().update(t, x)

    # Ranges are kept in single precision.
    assert distance[spikes[1:]].max() == pytest.approx(0.0, abs=1e-4)
    # The spike rides on the daily curve, which moved a little in a minute.
    assert distance[-PER_DAY + 101] == pytest.approx(0.0, abs=0.1)


def test_a_new_value_at_a_time_of_day_is_measured() -> None:
    t, x = daily(3)
    x[-10] += 30.0

    distance, _ = profile().update(t, x)

    assert distance[-10] > 25.0


def test_batches_and_single_points_agree() -> None:
    t, x = daily(3)
    x += np.random.default_rng(7).normal(0, 0.5, x.size)

    whole = profile().update(t, x)
    model = profile()
    parts = [model.update(t[i : i + 50], x[i : i + 50]) for i in range(0, x.size, 50)]

    np.testing.assert_array_equal(whole[0], np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(whole[1], np.concatenate([p[1] for p in parts]))


def test_weeks_look_further_back_than_days() -> None:
    t = STEP * np.arange(15 * PER_DAY)
    x = np.where((t // DAY_SECONDS) % 7 == 5, 100.0, 10.0)  # one busy weekday

    distance, _ = profile(days=1, weeks=2).update(t, x)

    busy_again = 12 * PER_DAY + 10
    assert distance[busy_again] == pytest.approx(0.0, abs=1e-4)


def test_a_bucket_must_divide_the_day() -> None:
    with pytest.raises(ValueError, match="bucket_seconds"):
        SeasonalProfile(7000.0, 1, 0, 0)
