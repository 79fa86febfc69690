from __future__ import annotations

import numpy as np
import pytest
import torch

from detector.optimizer.agent import BanditPolicy
from detector.optimizer.agent_config import AgentConfig
from detector.optimizer.arms import ArmGrid, growth
from detector.optimizer.fleet import Fleet
from detector.optimizer.outcome import held_once
from detector.optimizer.resources import HOUR
from detector.optimizer.sizer import Sizer
from tests.detector.optimizer.usage import CPU, MEMORY, STEP, steps, wave


def test_the_same_seed_gives_the_same_rows() -> None:
    points = {"a": wave(6, seed=11), "b": wave(6, seed=12)}

    first = Fleet(CPU, BanditPolicy()).feed(points)
    second = Fleet(CPU, BanditPolicy()).feed(points)

    assert first == second


def test_a_flat_series_is_sized_close_to_its_level() -> None:
    t, u = steps([40.0], minutes_each=12 * 60)

    rows = Fleet(MEMORY, BanditPolicy()).feed({"flat": (t, u)})

    assert rows[-1].allocation == pytest.approx(40.0, rel=0.1)
    assert min(r.allocation for r in rows) >= 40.0


def test_the_warm_up_replay_weighs_its_last_period_most() -> None:
    # Hour 1 of the warm-up has a reading every 10 minutes, hour 2 one a
    # minute; the replay scores both, and the record halves per period.
    sparse = np.arange(HOUR, 2 * HOUR, 600.0)
    dense = np.arange(2 * HOUR, 3 * HOUR, STEP)
    t = np.concatenate(([0.0], sparse, dense))
    policy = BanditPolicy(AgentConfig(series_decay=0.5))
    estimator = policy.estimator(MEMORY, "a")
    sizer = Sizer(MEMORY, estimator, 0.0)
    for timestamp in t:
        sizer.observe(float(timestamp), 10.0)

    sizer.decide(3 * HOUR)

    assert estimator.record.readings == pytest.approx(sparse.size * 0.5 + dense.size)


@pytest.fixture
def one_thread():
    # The network is tiny: more threads only contend on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_network_learns_and_decides(one_thread) -> None:
    config = AgentConfig(use_network=True, min_periods=8, train_every=4, train_steps=3)
    policy = BanditPolicy(config)
    points = {k: wave(6, start=60.0 * k, seed=k) for k in range(4)}

    rows = Fleet(CPU, policy).feed(points)

    assert policy.periods > 8
    assert rows and all(np.isfinite(r.allocation) for r in rows)


def test_growth_carries_the_last_period_over_one_more() -> None:
    t = np.arange(0.0, 2 * HOUR, STEP)
    u = 10.0 + t / HOUR  # one unit per hour

    assert growth(t, u, 2 * HOUR, HOUR) == pytest.approx(1.0, rel=1e-6)
    assert growth(t, u[::-1].copy(), 2 * HOUR, HOUR) == 0.0


def test_every_arm_has_a_value() -> None:
    grid = ArmGrid()
    t, u = wave(5, seed=13)

    values = grid.values(t, u, float(t[-1]) + STEP, HOUR)

    assert values.shape == (len(grid.arms),)
    assert np.all(values >= 0)


@pytest.mark.parametrize(
    "change",
    [
        {"series_decay": 0.0},
        {"violation_weight": 0.0},
        {"change_cost": -0.1},
    ],
)
def test_bad_settings_are_refused(change: dict) -> None:
    with pytest.raises(ValueError):
        AgentConfig(**change)


def test_holding_counts_one_short_reading_then_the_raise() -> None:
    readings = np.array([1.0, 1.0, 5.0, 5.0, 1.0])

    slack, short, allocated = held_once(readings, 2.0, react_margin=0.5)

    assert (slack, short, allocated) == (11.0, 1.0, 21.0)
    assert held_once(readings, 6.0, 0.5) == (17.0, 0.0, 30.0)
