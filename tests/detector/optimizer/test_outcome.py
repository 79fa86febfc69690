from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from detector.optimizer import outcome
from detector.optimizer.outcome import Period, Record, held_once, score


def held_period(values: list[float], react_margin: float = 0.5) -> Period:
    """Five readings after a decision over the arms `values`, the hold arm last."""
    history = SimpleNamespace(
        t=np.arange(6.0), u=np.array([9.0, 1.0, 1.0, 5.0, 5.0, 1.0])
    )
    n = len(values)
    record = Record(np.zeros(n), np.zeros(n), np.zeros(n))
    arms = np.array(values)
    return Period(
        record,
        start=1.0,
        end=6.0,
        history=history,
        values=arms,
        inputs=np.empty((0, 0)),
        reference=5.0,
        chosen=0,
        base=None,
        react_margin=react_margin,
    )


def test_every_arm_at_the_held_value_is_scored_as_holding() -> None:
    # Arms clipped to a full size of 2 all equal the held value; 4 does not.
    period = held_period([2.0, 4.0, 2.0, 2.0])
    readings = np.array([1.0, 1.0, 5.0, 5.0, 1.0])

    result = score(period)

    assert result is not None
    held = held_once(readings, 2.0, 0.5)
    for k in (0, 2, 3):
        got = (result.slack[k] * 5.0, result.violated[k], result.allocated[k] * 5.0)
        assert got == pytest.approx(held)
    assert result.violated[1] == 2.0
    assert result.slack[1] * 5.0 == pytest.approx(9.0)


def test_holding_is_computed_once_however_many_arms_share_the_value(
    monkeypatch,
) -> None:
    calls = []

    def counted(readings, value, react_margin):
        calls.append(value)
        return held_once(readings, value, react_margin)

    monkeypatch.setattr(outcome, "held_once", counted)

    score(held_period([2.0] * 300 + [4.0, 2.0]))

    assert calls == [2.0]
