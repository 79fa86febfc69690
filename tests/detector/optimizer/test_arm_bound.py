from __future__ import annotations

import numpy as np
import pytest

from benchmarks.optimizer_arm_bound import arm_bounds, arm_periods, second_half_cost
from detector.optimizer.arms import ArmGrid
from detector.optimizer.fleet import Row
from detector.optimizer.resources import HOUR
from tests.detector.optimizer.usage import CPU, MEMORY, steps, wave


def test_a_flat_series_costs_next_to_nothing_every_way() -> None:
    usage = {"flat": steps([40.0], minutes_each=12 * 60)}

    out = arm_bounds(usage, CPU, 10.0)

    assert out == pytest.approx(dict.fromkeys(out, 0.0), abs=1e-6)


def test_an_arm_learnt_on_a_quiet_half_pays_for_the_bursts_of_the_next() -> None:
    # Quiet for the first half of the scored hours, bursty after: the arm that
    # fitted the first half is the tight one, and it runs short in the second.
    usage = {}
    for k in range(3):
        t, u = wave(24, level=20.0 * (k + 1), seed=k)
        quiet = t < 13.5 * HOUR
        u = np.where(quiet, 20.0 * (k + 1), u)
        usage[k] = (t, u)

    out = arm_bounds(usage, CPU, 10.0)

    assert out["arm_per_series_second_half"] < out["arm_learnt_on_first_half"]


def test_on_memory_a_reading_that_ran_short_floors_the_arms_below_it() -> None:
    t, u = steps([10.0], minutes_each=12 * 60)
    u = u.copy()
    u[np.searchsorted(t, 4.5 * HOUR)] = 30.0
    grid = ArmGrid()

    memory = arm_periods({"spike": (t, u)}, MEMORY, grid)[0]
    cpu = arm_periods({"spike": (t, u)}, CPU, grid)[0]

    # The last period: every arm that ran short at 30 sizes at least 30 there.
    slack_memory = memory[-1].slack / memory[-1].readings
    slack_cpu = cpu[-1].slack / cpu[-1].readings
    assert slack_memory.min() >= 20.0 - 1e-9
    assert slack_cpu.min() < 1.0


def test_a_policy_is_scored_on_the_second_half_of_whole_periods() -> None:
    # 3 h of warm-up, then 4 scored hours: the second half is hours 5 and 6,
    # at 10 and then 20, under one allocation of 20 from T0 on.
    t, u = steps([5.0, 5.0, 5.0, 5.0, 5.0, 10.0, 20.0], minutes_each=60)
    rows = [Row(3 * HOUR, "a", 20.0)]

    cost = second_half_cost({"a": (t, u)}, CPU, rows, 10.0)

    # Slack 10 on 60 readings of 20 and none on the other 60.
    assert cost == pytest.approx(100 * 600 / 2400)
