from __future__ import annotations

import pytest

from detector.optimizer.baselines import KrrPolicy, VpaPolicy, WindowMaxPolicy
from detector.optimizer.fleet import Fleet
from detector.optimizer.histogram import DecayingHistogram
from detector.optimizer.resources import DAY, HOUR
from detector.optimizer.sizer import PLAIN
from tests.detector.optimizer.usage import CPU, MEMORY, steps


def test_a_percentile_is_the_end_of_its_bucket() -> None:
    histogram = DecayingHistogram(first_bucket=1.0, half_life=DAY)
    histogram.add(10.0, 1.0, 0.0)

    value = histogram.percentile(0.9)

    index = histogram.bucket(10.0)
    assert histogram.bucket_start(index) <= 10.0 < value
    assert value == histogram.bucket_start(index + 1)


def test_newer_samples_weigh_more() -> None:
    histogram = DecayingHistogram(first_bucket=1.0, half_life=HOUR)
    histogram.add(100.0, 1.0, 0.0)
    histogram.add(10.0, 1.0, 3 * HOUR)  # eight times the weight of the first

    assert histogram.percentile(0.5) < 20.0
    assert histogram.percentile(0.95) > 100.0


def test_subtracting_a_sample_removes_it() -> None:
    histogram = DecayingHistogram(first_bucket=1.0, half_life=HOUR)
    histogram.add(10.0, 1.0, 0.0)
    histogram.subtract(10.0, 1.0, 0.0)

    assert histogram.percentile(0.5) == 0.0


def test_weights_survive_a_long_run() -> None:
    histogram = DecayingHistogram(first_bucket=1.0, half_life=60.0)
    for k in range(0, 200 * 60, 60):
        histogram.add(10.0, 1.0, float(k))

    assert histogram.percentile(0.5) == pytest.approx(histogram.percentile(0.99))


# Three hours of warm-up in 6-minute blocks: one block of 50 among 10s.
WARMUP = [10.0] * 12 + [50.0] + [10.0] * 20


def first_allocation(policy, spec, t, u) -> float:
    rows = Fleet(spec, policy, PLAIN).feed({"s": (t, u)})
    return rows[0].allocation


def test_vpa_style_is_p90_plus_15_percent_of_cpu_samples() -> None:
    t, u = steps(WARMUP, minutes_each=6)

    value = first_allocation(VpaPolicy(), CPU, t, u)

    # p90 falls on the 10s; their bucket ends a little above 10.
    assert 1.15 * 10.0 < value < 1.15 * 10.0 * 1.06


def test_vpa_style_sizes_memory_from_the_interval_peak() -> None:
    t, u = steps(WARMUP, minutes_each=6)
    gib = 2.0**30

    value = first_allocation(VpaPolicy(), MEMORY, t, u * gib)

    # Bytes start at 10 MB buckets, so a few GiB land 5% apart.
    assert 1.15 * 50.0 * gib < value < 1.15 * 50.0 * gib * 1.06


def test_krr_style_and_window_max() -> None:
    t, u = steps(WARMUP, minutes_each=6)

    assert first_allocation(KrrPolicy(), CPU, t, u) == pytest.approx(10.0)
    assert first_allocation(KrrPolicy(), MEMORY, t, u) == pytest.approx(57.5)
    assert first_allocation(WindowMaxPolicy(), CPU, t, u) == 50.0
