from __future__ import annotations

import numpy as np

from detector.optimizer.agent import BanditPolicy
from detector.optimizer.fleet import Fleet
from detector.optimizer.resources import HOUR
from tests.detector.optimizer.usage import CPU, MEMORY, wave


def fleet_rows(points: dict, spec=MEMORY) -> list:
    return Fleet(spec, BanditPolicy()).feed(points)


def test_a_later_reading_changes_no_earlier_row() -> None:
    points = {"a": wave(10, seed=1), "b": wave(10, start=600.0, seed=2)}
    changed = {k: (t, u.copy()) for k, (t, u) in points.items()}
    t_b, u_b = changed["b"]
    cut = 6 * HOUR + 600.0
    # A spike in the other series, strictly after `cut`: it may move later
    # rows of both series, through the shared learner, but no earlier one.
    u_b[t_b > cut] *= 3

    original, perturbed = fleet_rows(points), fleet_rows(changed)

    assert original != perturbed
    before = [r for r in original if r.timestamp <= cut]
    assert before == [r for r in perturbed if r.timestamp <= cut]
    assert len(before) >= 2


def test_feeding_in_pieces_equals_feeding_at_once() -> None:
    points = {"a": wave(9, seed=3), "b": wave(9, start=120.0, seed=4)}
    whole = fleet_rows(points)

    fleet = Fleet(MEMORY, BanditPolicy())
    pieces = []
    for lo in np.arange(0, 9 * HOUR, 1800.0):
        chunk = {}
        for key, (t, u) in points.items():
            # Overlapping chunks, as a service re-reading its last step.
            sel = (t >= lo - 120.0) & (t < lo + 1800.0)
            chunk[key] = (t[sel], u[sel])
        pieces += fleet.feed(chunk)

    assert pieces == whole


def test_the_order_series_come_in_changes_no_row() -> None:
    # Same start, so both decide at the same instants: the first decision of
    # one teaches the shared learner its warm-up before the other decides.
    points = {k: wave(9, level=20.0 * (k + 1), seed=k) for k in range(4)}
    backwards = dict(reversed(points.items()))

    def ordered(rows: list) -> list:
        return sorted(rows, key=lambda r: (r.timestamp, r.series))

    assert ordered(fleet_rows(points)) == ordered(fleet_rows(backwards))


def test_a_series_shorter_than_the_warmup_gets_no_row() -> None:
    points = {"long": wave(6, seed=5), "short": wave(2.5, seed=6)}

    fleet = Fleet(CPU, BanditPolicy())
    rows = fleet.feed(points)

    assert {r.series for r in rows} == {"long"}
    assert fleet.sizers["short"].allocation is None


def test_series_past_the_cap_are_refused() -> None:
    points = {"a": wave(4, seed=7), "b": wave(4, seed=8)}

    fleet = Fleet(CPU, BanditPolicy(), max_series=1)
    fleet.feed(points)

    assert list(fleet.sizers) == ["a"]
    assert fleet.refused == 1


def test_silent_series_are_forgotten() -> None:
    fleet = Fleet(CPU, BanditPolicy())
    fleet.feed({"a": wave(4, seed=9), "b": wave(1, seed=10)})

    assert fleet.forget(2 * HOUR) == ["b"]
    assert list(fleet.sizers) == ["a"]


def test_a_series_back_after_a_long_silence_is_sized_again() -> None:
    t1, u1 = wave(5, seed=14)
    t2, u2 = wave(5, start=float(t1[-1]) + 30 * HOUR, seed=15)
    points = {"a": (np.concatenate([t1, t2]), np.concatenate([u1, u2]))}

    rows = Fleet(MEMORY, BanditPolicy()).feed(points)

    assert any(r.timestamp > t2[0] for r in rows)
