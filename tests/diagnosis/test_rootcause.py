"""Root-cause ranking on hand-made series: the mover is found, the noise and
the missing are not invented into causes."""

from __future__ import annotations

from detector.diagnosis.rootcause import Candidate, Window, rank_causes

WINDOW = Window(baseline_start=0, start=600, end=900)
TIMES = range(0, 901, 30)


def series(before: float, after: float, wobble: float = 0.0):
    return [
        (float(t), (before if t < 600 else after) + wobble * ((t // 30) % 3 - 1))
        for t in TIMES
    ]


def group(name: str, points, **labels: str) -> Candidate:
    return Candidate("process_group", name, {"command": name, **labels}, points)


def test_the_group_that_rose_ranks_first_with_its_share():
    candidates = [
        group("stress", series(0.02, 0.52, 0.01)),
        group("java", series(0.2, 0.21, 0.02)),
        group("sshd", series(0.01, 0.01)),
    ]
    host = [(t, 0.25 + (0.5 if t >= 600 else 0.0)) for t, _ in series(0, 0)]

    ranking = rank_causes(candidates, WINDOW, target=host)

    assert [c.name for c in ranking.causes] == ["stress"]
    assert ranking.causes[0].rank == 1
    assert 0.9 <= ranking.causes[0].share <= 1.0
    assert ranking.direction == 1


def test_a_process_started_in_the_window_counts_from_zero():
    late = [(t, v) for t, v in series(0.0, 0.6) if t >= 600]

    ranking = rank_causes(
        [group("miner", late), group("idle", series(0.1, 0.1))], WINDOW
    )

    assert ranking.causes[0].name == "miner"
    assert ranking.causes[0].baseline == 0.0


def test_a_drop_ranks_the_group_that_fell():
    candidates = [
        group("a", series(0.6, 0.0, 0.05)),
        group("b", series(0.3, 0.31, 0.05)),
    ]

    ranking = rank_causes(candidates, WINDOW, direction=-1)

    assert [c.name for c in ranking.causes] == ["a"]


def test_nothing_moved_gives_no_cause():
    candidates = [
        group("a", series(0.3, 0.3, 0.02)),
        group("b", series(0.1, 0.1, 0.01)),
    ]

    assert rank_causes(candidates, WINDOW).causes == ()


def test_missing_data_is_named_not_guessed():
    gone = [(t, v) for t, v in series(0.5, 0.5) if t < 300]

    ranking = rank_causes([group("gone", gone)], WINDOW)
    empty = rank_causes([], WINDOW)

    assert ranking.causes == ()
    assert any("gone" in m and "no points in the window" in m for m in ranking.missing)
    assert empty.missing == ("no candidate series in the window",)


def test_top_bounds_the_ranking():
    candidates = [group(f"g{i}", series(0.0, 0.1 + i / 100)) for i in range(6)]

    ranking = rank_causes(candidates, WINDOW, top=3)

    assert [c.rank for c in ranking.causes] == [1, 2, 3]
