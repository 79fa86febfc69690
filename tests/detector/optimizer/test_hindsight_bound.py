from __future__ import annotations

import numpy as np
import pytest

from benchmarks.optimizer_bound import best, best_within, bounds, sum_units, units
from tests.detector.optimizer.usage import CPU, MEMORY, steps, wave


def test_a_flat_series_costs_nothing_under_every_pick() -> None:
    usage = {"flat": steps([40.0], minutes_each=10 * 60)}

    out = bounds(usage, CPU, 10.0)

    assert out == pytest.approx(dict.fromkeys(out, 0.0), abs=1e-9)


def test_more_hindsight_never_costs_more() -> None:
    usage = {k: wave(12, level=20.0 * (k + 1), seed=k) for k in range(3)}

    out = bounds(usage, CPU, 10.0)

    assert out["lookahead"] <= out["rule_per_period"] + 1e-9
    assert out["rule_per_period"] <= out["rule_per_series"] + 1e-9
    assert out["rule_per_series"] <= out["one_rule"] + 1e-9
    assert out["one_rule"] > 0


def test_a_step_up_costs_a_causal_rule_but_not_the_lookahead() -> None:
    # Four flat hours, then a level twice as high: no rule that reads only the
    # past sees it coming; the look-ahead pick sizes each period exactly.
    t, u = steps([10.0, 20.0], minutes_each=5 * 60)

    out = bounds({"step": (t, u)}, CPU, 10.0)

    assert out["lookahead"] == pytest.approx(0.0, abs=1e-9)
    assert out["rule_per_series"] > 1.0
    assert np.isfinite(out["one_rule"])


def test_a_violation_cap_keeps_short_readings_under_it_at_a_price() -> None:
    # Bursts a rule cannot foresee: at weight 10 the best picks let some run
    # short; held to half that rate, the picks cost more slack.
    usage = {k: wave(12, level=20.0 * (k + 1), seed=k) for k in range(3)}
    rules, _ = units(usage, CPU)
    per_series = [sum_units(series) for series in rules]
    free_slack, free_violation = best(per_series, 10.0)
    assert free_violation > 0

    slack, violation = best_within(per_series, 10.0, free_violation / 2)

    assert violation <= free_violation / 2
    assert slack > free_slack
    out = bounds(usage, CPU, 10.0, violation_cap=free_violation / 2)
    assert out["rule_per_series_capped"] == pytest.approx(
        slack + 10.0 * violation, abs=0.01
    )
    assert out["rule_per_series_capped"] >= out["rule_per_series"]


def test_the_oom_floor_makes_a_one_off_peak_cost_every_period_after_it() -> None:
    # Flat at 10 with one reading of 30 in the fifth hour: without the floor
    # the best rule runs short once and goes back to 10; with it, whatever
    # ran short is the least allocation from then on.
    t, u = steps([10.0], minutes_each=12 * 60)
    u = u.copy()
    u[np.searchsorted(t, 4.5 * 3600)] = 30.0

    out = bounds({"spike": (t, u)}, MEMORY, 10.0, violation_cap=100.0)

    assert out["rule_per_series"] < out["rule_per_series_floor"]
    assert out["rule_per_series_floor"] <= out["rule_per_series_floor_capped"]
    assert "rule_per_series_floor" not in bounds({"spike": (t, u)}, CPU, 10.0)
