"""A program that outlived a crash keeps its target until it ends."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry

from alertmanager_webhook import survivors
from alertmanager_webhook.actuators.command import Command
from alertmanager_webhook.actuators.spawn import run_in_session
from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.start_journal import Began, StartJournal
from alertmanager_webhook.store_errors import StoreError
from alertmanager_webhook.worker import Worker

from .conftest import FakeClock, Receiver, make_config
from .test_command_actions import _ended, _ends_soon
from .test_worker import _payload

# Writes when it starts and, unless killed first, when it ends.
PROGRAM = """\
import sys, time
open(sys.argv[1], "a").write(f"start {time.monotonic()}\\n")
time.sleep(float(sys.argv[2]))
open(sys.argv[1], "a").write(f"end {time.monotonic()}\\n")
"""


def _crash_while_a_program_runs(
    make_receiver,
    tmp_path: Path,
    clock: FakeClock,
    sleep: float,
    timeout: float,
    marked: bool = True,
) -> tuple[Receiver, Worker, threading.Thread, Path]:
    """A receiver whose worker died while the program of its action ran on.

    Unless `marked`, it died before the action's row was marked running, as
    an action that runs under a second never is (admissions.py).
    """
    runs, script = tmp_path / "runs", tmp_path / "program.py"
    script.write_text(PROGRAM)
    policy = {
        "name": "poke",
        "match": {"alertname": "Poke"},
        "action": "command",
        "argv": [sys.executable, str(script), str(runs), str(sleep)],
        "cooldown_seconds": 0,
        "timeout_seconds": timeout,
    }
    config = make_config(mode="apply", policies=[policy])
    command = Command()
    receiver = make_receiver(config, actuators={"command": command})
    receiver.worker.recover()
    receiver.post(_payload("a"))
    [row] = receiver.actions()
    plan = command.plan({}, config.policies[0], {})
    if marked:
        assert Jobs(receiver.store).move(
            row["id"],
            ("queued",),
            result="running",
            target=plan.target,
            spec=plan.spec,
            started_unix=clock(),
        )
    else:  # a second attempt, the first one's failure recorded
        assert Jobs(receiver.store).move(
            row["id"], ("queued",), attempts=1, started_unix=clock() - 100
        )

    # The dead worker's program, started as that worker starts one.
    journal = StartJournal.beside(receiver.store.file())
    mark = journal.mark(row["id"], plan.target, plan.text, began_unix=clock())
    program = threading.Thread(
        target=lambda: _run_ignoring_its_end(plan.spec["argv"], mark)
    )
    program.start()
    deadline = time.monotonic() + 10
    while journal.program(row["id"]) is None and time.monotonic() < deadline:
        time.sleep(0.01)

    return receiver, _restart(receiver, config, clock), program, runs


def _restart(receiver: Receiver, config: WebhookConfig, clock: FakeClock) -> Worker:
    """A worker started anew on the receiver's database, as after a crash."""
    worker = Worker(
        config,
        Jobs(receiver.store),
        {"command": Command()},
        WebhookMetrics(CollectorRegistry()),
        clock=clock,
    )
    worker.recover()
    return worker


def _run_ignoring_its_end(argv: list[str], began: Began) -> None:
    try:
        run_in_session(argv, timeout=60, env={"PATH": os.defpath}, began=began)
    except Exception:  # noqa: BLE001 (killed: what the dead worker would have seen)
        pass


class _LetGo:
    """A survivor's `gone`: whether it was called, and what it was told."""

    def __init__(self) -> None:
        self.called = threading.Event()
        self.killed: bool | None = None

    def __call__(self, killed: bool | None) -> None:
        self.killed = killed
        self.called.set()


def _runs(path: Path) -> list[tuple[str, float]]:
    return [
        (w, float(t))
        for w, t in (line.split() for line in path.read_text().splitlines())
    ]


def test_a_new_action_on_the_target_waits_for_the_survivor_to_end(
    make_receiver, tmp_path: Path, clock: FakeClock
) -> None:
    receiver, restarted, program, runs = _crash_while_a_program_runs(
        make_receiver, tmp_path, clock, sleep=1.0, timeout=30.0
    )

    receiver.post(_payload("b"))  # another alert, the same command: one target
    restarted.drain()
    program.join()

    assert [w for w, _ in _runs(runs)] == ["start", "end", "start", "end"]
    first, second = receiver.actions()
    assert first["reason"].startswith("interrupted by a restart; outcome unknown")
    assert second["result"] == "applied"


def test_how_a_survivor_ended_is_recorded_and_it_still_counts_as_a_change(
    make_receiver, tmp_path: Path, clock: FakeClock
) -> None:
    receiver, restarted, program, runs = _crash_while_a_program_runs(
        make_receiver, tmp_path, clock, sleep=0.5, timeout=30.0
    )

    restarted.stop(timeout=10)  # waits for the survivor's watch to end
    program.join()

    [action] = receiver.actions()
    assert action["result"] == "failed"
    assert action["reason"] == (
        "interrupted by a restart; outcome unknown, not run again because the "
        "action is not idempotent; its program's process group ran on after "
        "the restart and ended by itself, 0s after it began; its exit status "
        "is not known, as only the receiver that started the program could "
        "have learnt it"
    )
    assert [w for w, _ in _runs(runs)] == ["start", "end"]  # never run again
    assert receiver.store.verify().ok  # the note has its audit record
    jobs = Jobs(receiver.store)
    assert jobs.last_change("command", action["target"], 0) == clock()


def test_a_survivor_whose_end_cannot_be_recorded_still_lets_its_target_go(
    make_receiver, tmp_path: Path, clock: FakeClock
) -> None:
    receiver, restarted, program, runs = _crash_while_a_program_runs(
        make_receiver, tmp_path, clock, sleep=0.5, timeout=30.0
    )
    moves = restarted._jobs.move

    def failing_note(action_id, expect, **fields):
        if expect == ("failed",):
            raise StoreError("disk I/O error")
        return moves(action_id, expect, **fields)

    restarted._jobs.move = failing_note  # type: ignore[method-assign]
    receiver.post(_payload("b"))
    restarted.drain()
    program.join()

    first, second = receiver.actions()
    assert first["reason"].endswith(
        "not run again because the action is not idempotent"
    )
    assert second["result"] == "applied"


def test_a_survivor_of_an_action_not_yet_marked_running_is_found_by_its_mark(
    make_receiver, tmp_path: Path, clock: FakeClock
) -> None:
    receiver, restarted, program, runs = _crash_while_a_program_runs(
        make_receiver, tmp_path, clock, sleep=1.0, timeout=30.0, marked=False
    )

    receiver.post(_payload("b"))
    restarted.drain()
    program.join()

    # Not run again, and the next action on its target waited for it to end.
    assert [w for w, _ in _runs(runs)] == ["start", "end", "start", "end"]
    first, second = receiver.actions()
    assert first["result"] == "failed"
    assert first["reason"].startswith("interrupted by a restart; outcome unknown")
    # What its row did not yet say of this attempt, its mark did.
    assert first["target"] == second["target"] != ""
    assert first["plan"] == second["plan"] != ""
    assert first["attempts"] == 2
    assert first["started_unix"] == clock()  # not the first attempt's
    assert second["result"] == "applied"


def test_a_survivor_is_killed_at_its_timeout_and_the_target_let_go(
    make_receiver, tmp_path: Path, clock: FakeClock
) -> None:
    receiver, restarted, program, runs = _crash_while_a_program_runs(
        make_receiver, tmp_path, clock, sleep=60.0, timeout=1.0
    )
    began = time.monotonic()

    receiver.post(_payload("b"))
    restarted.drain()
    program.join(10)

    assert not program.is_alive()
    assert time.monotonic() - began < 10
    # Both killed at their timeout, one after the other, neither ending itself.
    assert [w for w, _ in _runs(runs)] == ["start", "start"]
    first, second = receiver.actions()
    assert first["reason"].endswith(
        "; its program's process group ran on after the restart until its "
        "timeout of 1s, which killed it"
    )
    assert second["reason"].endswith("timed out after 1s")


def test_a_stop_still_ends_a_survivor_at_its_timeout(
    make_receiver, tmp_path: Path, clock: FakeClock
) -> None:
    # Its watch is what kills it at its timeout: a receiver stopped
    # meanwhile waits for that, rather than leave it to run on unbounded.
    receiver, restarted, program, runs = _crash_while_a_program_runs(
        make_receiver, tmp_path, clock, sleep=30.0, timeout=1.5
    )

    restarted.stop(timeout=10)
    program.join(0.5)  # killed before the stop returned

    assert not program.is_alive()
    assert [w for w, _ in _runs(runs)] == ["start"]


def test_a_crash_while_the_survivor_is_waited_for_finds_it_again(
    make_receiver, tmp_path: Path, clock: FakeClock
) -> None:
    receiver, restarted, program, runs = _crash_while_a_program_runs(
        make_receiver, tmp_path, clock, sleep=1.5, timeout=30.0
    )
    # The restarted worker dies too, its survivor still running.
    config = restarted._config
    again = _restart(receiver, config, clock)

    receiver.post(_payload("b"))
    again.drain()
    program.join()

    assert [w for w, _ in _runs(runs)] == ["start", "end", "start", "end"]
    journal = StartJournal.beside(receiver.store.file())
    deadline = time.monotonic() + 5
    while journal.begun() and time.monotonic() < deadline:
        time.sleep(0.05)  # the survivor's mark is spent once it has ended
    assert journal.begun() == set()


def test_what_a_survivor_left_running_keeps_its_target_until_its_timeout(
    tmp_path: Path,
) -> None:
    # Its program ends at once; the sleep it started in the background, its
    # output elsewhere, still acts on the target until the timeout ends it.
    pid_file = tmp_path / "pid"
    program = subprocess.Popen(
        [
            "/bin/sh",
            "-c",
            f"sleep 30 >/dev/null 2>&1 & echo $! > {pid_file}; sleep 0.2",
        ],
        start_new_session=True,
    )
    let_go = _LetGo()
    started = psutil.Process(program.pid).create_time()

    assert survivors.watch(program.pid, started, 1.5, let_go) is not None
    program.wait()  # the worker that would have reaped it is gone
    held_after_its_end = not let_go.called.wait(0.8)

    assert held_after_its_end
    assert let_go.called.wait(5.0)
    assert let_go.killed
    assert _ends_soon(int(pid_file.read_text()))


def test_what_a_survivor_left_running_is_held_after_the_program_is_gone(
    tmp_path: Path,
) -> None:
    # The program ended before the restart; the sleep it left runs on in its
    # group and holds the target until the timeout ends it.
    pid_file = tmp_path / "pid"
    program = subprocess.Popen(
        ["/bin/sh", "-c", f"sleep 30 >/dev/null 2>&1 & echo $! > {pid_file}"],
        start_new_session=True,
    )
    started = psutil.Process(program.pid).create_time()
    program.wait()
    let_go = _LetGo()

    assert survivors.watch(program.pid, started, 1.0, let_go) is not None
    held = not let_go.called.wait(0.6)

    assert held
    assert let_go.called.wait(5.0)
    assert let_go.killed
    assert _ended(int(pid_file.read_text()))
