"""The worker's threads: actions run side by side, one target at a time, capped."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import pytest

from alertmanager_webhook.actuators.base import Outcome, Plan
from alertmanager_webhook.worker.claims import BATCH

from .conftest import Receiver, make_config
from .test_worker import _payload, _policy

# A guard against a hung test, never a figure the test checks.
GUARD_SECONDS = 10.0
# How long a thread that should be held back is given to show it is not.
HOLD_SECONDS = 0.5


class Gathering:
    """An actuator whose applies meet at a barrier: they pass only side by side.

    `target_of` maps an alert's host to the target its plan names, so that
    several alerts can aim at one target.
    """

    idempotent = False

    def __init__(self, parties: int, target_of: dict[str, str] | None = None) -> None:
        self.barrier = threading.Barrier(parties, timeout=GUARD_SECONDS)
        self.target_of = target_of or {}
        self.lock = threading.Lock()
        self.applied: Counter[str] = Counter()
        self.active: Counter[str] = Counter()
        self.overlaps: list[str] = []

    def plan(self, labels, policy, params) -> Plan:
        host = labels["host"]
        target = self.target_of.get(host, host)
        return Plan(target, f"poke {target}", spec={"host": host, "target": target})

    def apply(self, spec, began=None) -> Outcome:
        target = spec["target"]
        with self.lock:
            if self.active[target]:
                self.overlaps.append(target)
            self.active[target] += 1
        try:
            self.meet(spec)
        finally:
            with self.lock:
                self.active[target] -= 1
                self.applied[spec["host"]] += 1
        return Outcome("poked", {"host": spec["host"]})

    def meet(self, spec: Any) -> None:
        self.barrier.wait()

    def restore(self, undo) -> str:
        return "unpoked"


def _receiver(make_receiver, actuator: Gathering, **config: Any) -> Receiver:
    settings = {
        "mode": "apply",
        "policies": [_policy()],
        "blast_radius_targets": 1000,
        "max_active_actions": 1000,
    }
    settings.update(config)
    return make_receiver(make_config(**settings), actuators={"command": actuator})


def _run(receiver: Receiver, hosts: list[str]) -> None:
    """Start the threads, queue one alert per host, stop once the queue is empty."""
    receiver.worker.start()
    try:
        for host in hosts:
            receiver.post(_payload(host))
        assert receiver.worker.wait_idle(GUARD_SECONDS)
    finally:
        receiver.worker.stop(GUARD_SECONDS)


def test_actions_on_different_targets_run_side_by_side(make_receiver) -> None:
    # Three applies pass the barrier only if three threads hold them at once.
    gathering = Gathering(parties=3)
    receiver = _receiver(make_receiver, gathering, workers=3)

    _run(receiver, ["a", "b", "c"])

    assert [a["result"] for a in receiver.actions()] == ["applied"] * 3
    assert gathering.applied == Counter({"a": 1, "b": 1, "c": 1})


def test_two_actions_on_one_target_never_overlap(make_receiver) -> None:
    class Holding(Gathering):
        def meet(self, spec: Any) -> None:
            # Whichever comes first waits for the other to join it; the
            # target lock must keep the other out, so the wait runs out.
            with self.lock:
                arrived.append(spec["host"])
                first = len(arrived) == 1
            if first:
                second_inside.wait(HOLD_SECONDS)
            else:
                second_inside.set()

    arrived: list[str] = []
    second_inside = threading.Event()
    holding = Holding(parties=1, target_of={"a": "db-1", "b": "db-1"})
    receiver = _receiver(make_receiver, holding, workers=4)

    _run(receiver, ["a", "b"])

    assert holding.overlaps == []
    assert holding.applied == Counter({"a": 1, "b": 1})


def test_cooldown_holds_across_threads(make_receiver) -> None:
    gathering = Gathering(parties=1, target_of={"a": "db-1", "b": "db-1"})
    policy = _policy(cooldown_seconds=300)
    receiver = _receiver(make_receiver, gathering, workers=4, policies=[policy])

    _run(receiver, ["a", "b"])

    results = sorted((a["result"], a["reason"][:9]) for a in receiver.actions())
    assert results == [("applied", "poked"), ("skipped", "cooldown:")]


def test_cap_on_changes_in_force_holds_across_threads(make_receiver) -> None:
    # Two may pass; they meet at the barrier, so both are running at once
    # while the other two threads check the cap.
    gathering = Gathering(parties=2)
    receiver = _receiver(make_receiver, gathering, workers=4, max_active_actions=2)

    _run(receiver, ["a", "b", "c", "d"])

    results = Counter(a["result"] for a in receiver.actions())
    assert results == Counter({"applied": 2, "skipped": 2})
    assert all(
        a["reason"] == "cap: 2 changes in force, at most 2"
        for a in receiver.actions()
        if a["result"] == "skipped"
    )


def test_blast_radius_holds_across_threads(make_receiver) -> None:
    gathering = Gathering(parties=1)
    receiver = _receiver(make_receiver, gathering, workers=4, blast_radius_targets=3)

    _run(receiver, [f"h{i}" for i in range(8)])

    assert Counter(a["result"] for a in receiver.actions()) == Counter(
        {"applied": 3, "skipped": 5}
    )


def test_a_dry_runs_preview_of_the_blast_radius_holds_across_threads(
    make_receiver,
) -> None:
    receiver = _receiver(
        make_receiver,
        Gathering(parties=1),
        mode="dry-run",
        workers=4,
        blast_radius_targets=3,
    )

    _run(receiver, [f"h{i}" for i in range(20)])

    assert Counter(a["reason"].split(":")[0] for a in receiver.actions()) == Counter(
        {"apply would run it": 3, "apply would skip it": 17}
    )


@pytest.mark.parametrize("workers", [1, 4])
def test_each_action_runs_exactly_once(make_receiver, workers: int) -> None:
    gathering = Gathering(parties=1)
    receiver = _receiver(make_receiver, gathering, workers=workers)
    hosts = [f"h{i}" for i in range(40)]

    _run(receiver, hosts)

    assert gathering.applied == Counter(dict.fromkeys(hosts, 1))
    assert gathering.overlaps == []


def test_actions_on_a_held_target_wait_aside_while_others_run(
    make_receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # Two threads; "a1" holds db-1 until let go. The actions after it, planned
    # on db-1 too, must not keep the second thread, and more of them than a
    # look at the queue reads must not hide "b", on another target: it runs
    # meanwhile.
    class Held(Gathering):
        def meet(self, spec: Any) -> None:
            if spec["host"] == "a1":
                a1_inside.set()
                assert let_go.wait(GUARD_SECONDS)
            elif spec["host"] == "b":
                b_applied.set()

    a1_inside, let_go, b_applied = (
        threading.Event(),
        threading.Event(),
        threading.Event(),
    )
    waiting = [f"a{i}" for i in range(2, BATCH + 7)]
    held = Held(parties=1, target_of=dict.fromkeys(["a1", *waiting], "db-1"))
    receiver = _receiver(make_receiver, held, workers=2)

    caplog.set_level(logging.INFO, logger="alertmanager_webhook.worker")
    receiver.worker.start()
    try:
        receiver.post(_payload("a1"))
        assert a1_inside.wait(GUARD_SECONDS)
        for host in waiting:
            receiver.post(_payload(host))
        receiver.clock.now += 100
        receiver.post(_payload("b"))
        b_ran_while_held = b_applied.wait(GUARD_SECONDS)
        ran_while_held = sum(held.applied[host] for host in waiting)
        # The queue is not emptied while they wait: a stuck worker shows.
        receiver.worker.notify()
        time.sleep(HOLD_SECONDS)
        emptied = receiver.sample("aiops_webhook_worker_last_success_timestamp_seconds")
        let_go.set()
        assert receiver.worker.wait_idle(GUARD_SECONDS)
    finally:
        let_go.set()
        receiver.worker.stop(GUARD_SECONDS)

    assert b_ran_while_held
    assert ran_while_held == 0
    assert emptied is not None and emptied < receiver.clock.now - 99
    assert held.overlaps == []
    assert held.applied == Counter(dict.fromkeys(["a1", *waiting, "b"], 1))
    assert {a["result"] for a in receiver.actions()} == {"applied"}
    # Said once per action set aside, however often it is planned again.
    said = Counter(
        r.getMessage().split()[5]
        for r in caplog.records
        if r.getMessage().startswith("action waits for its target")
    )
    assert len(said) >= 1
    assert set(said.values()) == {1}
