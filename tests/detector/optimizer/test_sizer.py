from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from detector.optimizer.estimate import Estimate
from detector.optimizer.resources import HOUR
from detector.optimizer.sizer import PLAIN, Rules, Sizer, climb_rate, next_due
from tests.detector.optimizer.usage import CPU, MEMORY, STEP, steps


@dataclass
class Fixed:
    """An estimator that always answers `value`."""

    value: float

    def observe(self, timestamp: float, value: float, allocation: float | None) -> None:
        pass

    def estimate(self, view: object, now: float) -> Estimate:
        return Estimate(self.value, self.value, self.value)


def play(sizer: Sizer, t: np.ndarray, u: np.ndarray) -> list[tuple[float, float]]:
    rows = []
    for ti, ui in zip(t.tolist(), u.tolist(), strict=True):
        if sizer.allocation is None and ti > sizer.warmup_end:
            value = sizer.decide(sizer.warmup_end)
            if value is not None:
                rows.append((sizer.warmup_end, value))
        value = sizer.decide(ti)
        if value is not None:
            rows.append((ti, value))
        sizer.observe(ti, ui)
    return rows


def test_first_allocation_at_warmup_end_and_first_change_a_period_later() -> None:
    t, u = steps([10.0, 50.0], minutes_each=5 * 60)
    sizer = Sizer(MEMORY, Fixed(20.0), float(t[0]))

    rows = play(sizer, t, u)

    assert rows[0] == (3 * HOUR, 20.0)
    # The readings of 50 run short from 5 h; the raise waits for T0 + U.
    assert rows[1][0] >= 3 * HOUR + HOUR
    assert all(b[0] - a[0] >= HOUR for a, b in zip(rows[1:], rows[2:], strict=False))


def test_changes_keep_a_period_apart() -> None:
    # Alternating levels make the estimator want a change at every reading.
    t = np.arange(0.0, 12 * HOUR, STEP)
    u = np.where((t // 600) % 2 == 0, 10.0, 90.0)
    estimator = Fixed(10.0)
    sizer = Sizer(CPU, estimator, 0.0)

    rows = []
    for ti, ui in zip(t.tolist(), u.tolist(), strict=True):
        estimator.value = ui  # the last reading: the most eager policy
        value = sizer.decide(ti)
        if value is not None:
            rows.append((ti, value))
        sizer.observe(ti, ui)

    times = [r[0] for r in rows]
    assert times[0] == 3 * HOUR
    assert times[1] >= times[0] + HOUR
    assert np.all(np.diff(times) >= HOUR)


def test_memory_never_drops_below_a_reading_that_ran_short() -> None:
    t, u = steps([10.0, 40.0, 10.0], minutes_each=4 * 60)
    sizer = Sizer(MEMORY, Fixed(15.0), float(t[0]), Rules(react_margin=0.0))

    rows = play(sizer, t, u)

    short_at = float(t[np.argmax(u > 15.0)])
    later = [value for when, value in rows if when > short_at]
    assert later, "the OOM must lead to a raise"
    assert min(later) >= 40.0
    assert sizer.oom_floor == 40.0


def test_cpu_short_readings_set_no_floor() -> None:
    t, u = steps([10.0, 40.0, 10.0], minutes_each=4 * 60)
    sizer = Sizer(CPU, Fixed(15.0), float(t[0]), Rules(react_margin=0.0))

    rows = play(sizer, t, u)

    assert sizer.oom_floor == 0.0
    assert rows[-1][1] == 15.0


def test_a_reaction_raises_as_soon_as_a_change_is_allowed() -> None:
    t, u = steps([10.0, 30.0], minutes_each=6 * 60)
    sizer = Sizer(MEMORY, Fixed(12.0), float(t[0]), Rules(react_margin=0.5))

    rows = play(sizer, t, u)

    first_short = float(t[np.argmax(u > 12.0)])
    assert rows[1] == (first_short + STEP, 45.0)


def ramp(level: float, per_hour: float, hours: float):
    """Flat at `level` for 4 h, then climbing `per_hour` every hour."""
    t = np.arange(0.0, hours * HOUR, STEP)
    u = level + per_hour * np.maximum(t - 4 * HOUR, 0.0) / HOUR
    return t, u


def short_after_the_raise(rows: list[tuple[float, float]], t, u) -> int:
    """Short readings in the period the first raise locks."""
    raised_at, value = rows[1]
    locked = (t >= raised_at) & (t < raised_at + HOUR)
    return int((u[locked] > value).sum())


def test_a_reaction_to_a_climb_carries_the_climb_over_the_period() -> None:
    t, u = ramp(10.0, per_hour=6.0, hours=8)
    projected = play(Sizer(MEMORY, Fixed(12.0), 0.0, Rules(react_margin=0.0)), t, u)
    peak_only = play(
        Sizer(MEMORY, Fixed(12.0), 0.0, Rules(react_margin=0.0, trend_window=0.0)),
        t,
        u,
    )

    # The raise to the peak alone runs short again at once, for the whole
    # locked period; the projected one holds for the period.
    assert projected[1][1] == pytest.approx(12.1 + 6.0, rel=0.01)
    assert short_after_the_raise(projected, t, u) <= 1  # float dust at the end
    assert short_after_the_raise(peak_only, t, u) > 50


def test_a_ramp_that_began_minutes_before_it_ran_short_is_carried() -> None:
    # Flat for hours, then a job's next phase climbs 24 an hour: it runs short
    # five minutes in, when a longer window would still read mostly flat.
    t, u = ramp(40.0, per_hour=24.0, hours=6)
    sizer = Sizer(MEMORY, Fixed(42.0), 0.0, Rules(react_margin=0.0))

    rows = play(sizer, t, u)

    peak = float(u[np.argmax(u > 42.0)])
    assert rows[1][1] == pytest.approx(peak + 24.0, rel=0.01)
    assert short_after_the_raise(rows, t, u) <= 1


def test_a_fast_climb_at_most_doubles_the_raise() -> None:
    # Ten units a minute for half an hour before it runs short: the climb
    # carried over an hour would be 600 more.
    t, u = ramp(10.0, per_hour=600.0, hours=5)
    sizer = Sizer(MEMORY, Fixed(300.0), 0.0, Rules(react_margin=0.0))

    rows = play(sizer, t, u)

    assert rows[1][1] == pytest.approx(2 * u[np.argmax(u > 300.0)])


def test_a_climb_is_what_most_readings_share_not_one_jump() -> None:
    t = np.arange(0.0, 15 * STEP, STEP)

    assert climb_rate(t, np.where(t < 14 * STEP, 10.0, 30.0)) == 0.0
    assert climb_rate(t, 10.0 + t / 60.0) == pytest.approx(1 / 60.0)
    assert climb_rate(t, 10.0 - t / 60.0) == 0.0


def test_a_climb_in_uneven_steps_is_its_whole_rise() -> None:
    # Two small steps, then a large one, over and over: the median step is
    # the small one, a third of the climb's pace or less.
    t = np.arange(0.0, 16 * STEP, STEP)
    u = 10.0 + np.cumsum(np.r_[0.0, np.tile([0.1, 0.1, 2.8], 5)])

    assert climb_rate(t, u) == pytest.approx(1.0 / STEP)


def test_plain_rules_leave_the_policy_alone() -> None:
    t, u = steps([10.0, 30.0], minutes_each=6 * 60)
    sizer = Sizer(MEMORY, Fixed(12.0), float(t[0]), PLAIN)

    rows = play(sizer, t, u)

    assert rows == [(3 * HOUR, 12.0)]


def test_allocations_stop_at_full_size() -> None:
    t, u = steps([50.0], minutes_each=5 * 60)
    sizer = Sizer(CPU, Fixed(250.0), float(t[0]))

    rows = play(sizer, t, u)

    assert rows == [(3 * HOUR, 100.0)]


def test_no_decision_without_warmup() -> None:
    t, u = steps([10.0], minutes_each=2 * 60)
    sizer = Sizer(MEMORY, Fixed(12.0), float(t[0]))

    assert play(sizer, t, u) == []
    assert sizer.allocation is None


def stepped(due: float, now: float, period: float) -> float:
    while due <= now:
        due += period
    return due


@pytest.mark.parametrize(
    ("due", "now"),
    [(7200.0, 3600.0), (7200.0, 7200.0), (7200.0, 7199.5), (7200.0, 50_000.0)],
)
def test_the_next_due_time_is_the_first_grid_point_after_now(due, now) -> None:
    assert next_due(due, now, HOUR) == stepped(due, now, HOUR)


@pytest.mark.parametrize(
    "now",
    # A timestamp in milliseconds among seconds, and one where adding an hour
    # no longer changes a float.
    [1_662_869_520_000.0, 1e20],
)
def test_a_timestamp_far_ahead_is_due_after_it_at_once(now) -> None:
    due = next_due(1_662_869_520.0, now, HOUR)

    # At 1e20 the float after `now` is more than an hour later.
    assert now < due <= now + max(HOUR, math.ulp(now))
