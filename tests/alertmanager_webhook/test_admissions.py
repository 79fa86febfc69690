"""An admitted action is written once at its end, or marked running if long."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from alertmanager_webhook.actuators.base import Outcome
from alertmanager_webhook.admissions import Admissions

from .test_worker import Recorder, _act_once, _build, _payload


class Moves:
    """Records the moves asked for; answers `answer`."""

    def __init__(self, answer: bool = True) -> None:
        self.asked: list[tuple[int, tuple[str, ...], dict[str, Any]]] = []
        self.answer = answer

    def __call__(self, action_id: int, expect: tuple[str, ...], **fields: Any) -> bool:
        self.asked.append((action_id, expect, fields))
        return self.answer


@contextmanager
def _started(admissions: Admissions) -> Iterator[Admissions]:
    admissions.start()
    try:
        yield admissions
    finally:
        admissions.stop()


def _wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_an_action_that_ends_soon_is_never_marked() -> None:
    moves = Moves()
    with _started(Admissions(moves, mark_after=30.0)) as admissions:
        admitted = admissions.admit(7, "host a", "queued", {"attempts": 1})
        with admissions.unmarked() as unmarked:
            assert unmarked == [admitted]
        with admissions.ending(admitted) as (expect, first):
            with admissions.unmarked() as unmarked:
                assert unmarked == [admitted]  # counted until its end is written

    assert moves.asked == []
    # Its end writes what a mark would have: from the state it is still in.
    assert (expect, first) == (("queued",), {"attempts": 1})
    with admissions.unmarked() as unmarked:
        assert unmarked == []


def test_an_end_that_fails_to_be_written_leaves_the_action_counted() -> None:
    admissions = Admissions(Moves(), mark_after=30.0)
    admitted = admissions.admit(7, "host a", "queued", {"attempts": 1})
    with pytest.raises(OSError), admissions.ending(admitted):
        raise OSError("disk I/O error")

    with admissions.unmarked() as unmarked:
        assert unmarked == [admitted]


def test_an_action_that_runs_long_is_marked_running_meanwhile() -> None:
    moves = Moves()
    with _started(Admissions(moves, mark_after=0.05)) as admissions:
        admitted = admissions.admit(7, "host a", "approved", {"attempts": 2})
        assert _wait_for(lambda: admitted.marked)
        with admissions.unmarked() as unmarked:
            assert unmarked == []  # the database shows it running now
        with admissions.ending(admitted) as (expect, first):
            pass

    assert moves.asked == [(7, ("approved",), {"result": "running", "attempts": 2})]
    assert (expect, first) == (("running",), {})


def test_actions_admitted_while_one_waits_are_each_marked_at_their_own_time() -> None:
    # The marking thread is woken only when it waits for nothing: one admitted
    # while it waits for an earlier one's mark must still be marked, and not
    # before its own second is up.
    moves = Moves()
    with _started(Admissions(moves, mark_after=0.5)) as admissions:
        first = admissions.admit(1, "host a", "queued", {"attempts": 1})
        time.sleep(0.25)
        second = admissions.admit(2, "host b", "queued", {"attempts": 1})
        second_admitted = time.monotonic()
        assert _wait_for(lambda: first.marked)
        assert not second.marked
        assert _wait_for(lambda: second.marked)
        assert time.monotonic() - second_admitted >= 0.49
        third = admissions.admit(3, "host c", "queued", {"attempts": 1})
        assert _wait_for(lambda: third.marked)

    assert [asked[0] for asked in moves.asked] == [1, 2, 3]


def test_a_mark_refused_is_not_asked_again_and_the_end_writes_it_all() -> None:
    moves = Moves(answer=False)
    with _started(Admissions(moves, mark_after=0.01)) as admissions:
        admitted = admissions.admit(7, "host a", "queued", {"attempts": 1})
        assert _wait_for(lambda: len(moves.asked) == 1)
        time.sleep(0.1)
        with admissions.ending(admitted) as (expect, first):
            pass

    assert len(moves.asked) == 1
    assert (expect, first) == (("queued",), {"attempts": 1})


def _audited_results(receiver, action_id: int) -> list[str]:
    rows = receiver.store.query(
        "SELECT detail FROM audit WHERE subject = ? ORDER BY id",
        [f"action:{action_id}"],
    )
    return [json.loads(row["detail"])["result"] for row in rows]


def test_a_short_action_is_written_once_with_when_it_started(make_receiver) -> None:
    receiver, action = _act_once(make_receiver, Recorder())

    assert action["result"] == "applied"
    assert action["target"] == "host a" and action["attempts"] == 1
    assert action["started_unix"] <= action["finished_unix"]
    assert _audited_results(receiver, action["id"]) == ["queued", "applied"]


def test_a_long_action_shows_running_while_it_runs(make_receiver) -> None:
    release = threading.Event()

    class Slow(Recorder):
        def apply(self, spec, began=None) -> Outcome:
            release.wait(10)
            return super().apply(spec)

    receiver = _build(make_receiver, Slow())
    receiver.worker._admissions._mark_after = 0.05
    receiver.worker.start()
    try:
        receiver.post(_payload("a"))
        receiver.worker.notify()
        assert _wait_for(lambda: receiver.actions()[0]["result"] == "running")
        running = receiver.actions()[0]
        assert running["target"] == "host a" and running["started_unix"]
        release.set()
        assert _wait_for(lambda: receiver.actions()[0]["result"] == "applied")
    finally:
        release.set()
        receiver.worker.stop()

    [action] = receiver.actions()
    assert _audited_results(receiver, action["id"]) == ["queued", "running", "applied"]
