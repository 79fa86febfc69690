"""The limits count what may have changed a target; a dry run previews them."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alertmanager_webhook.actuators.base import Outcome
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.metrics import LIMITS, WebhookMetrics
from alertmanager_webhook.worker import Worker

from .conftest import Receiver, make_config
from .test_worker import (
    Recorder,
    _build,
    _payload,
    _policy,
    alert_again_within_and_after_a_cooldown_of_60s,
)

WOULD_RUN = "apply would run it: no cooldown, cap or blast radius holds it back"


class _DiesAfterItBegan(Recorder):
    def apply(self, spec, began=None) -> Outcome:
        began()
        raise KeyboardInterrupt  # the receiver is killed while its effect runs


def _settings(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"mode": "apply", "policies": [_policy()]}
    settings.update(overrides)
    return settings


def _interrupted_on(
    make_receiver, host: str, marked_running: bool, **settings: Any
) -> tuple[Receiver, Recorder]:
    """A receiver killed while its action on `host` ran, and a fresh worker.

    With `marked_running`, the action had run long enough for its row to say
    so (admissions.py). The fresh worker has recorded it failed, outcome
    unknown; its actuator records what it is asked to do.
    """
    config = make_config(**_settings(**settings))
    receiver = make_receiver(config, actuators={"command": _DiesAfterItBegan()})
    receiver.worker.recover()
    receiver.post(_payload(host))
    with pytest.raises(KeyboardInterrupt):
        receiver.worker.drain()
    if marked_running:
        [row] = receiver.actions()
        assert Jobs(receiver.store).move(
            row["id"],
            ("queued",),
            result="running",
            target=f"host {host}",
            started_unix=receiver.clock(),
        )

    recorder = Recorder()
    receiver.worker = Worker(
        config,
        Jobs(receiver.store),
        {"command": recorder},
        WebhookMetrics(CollectorRegistry()),
        clock=receiver.clock,
    )
    receiver.worker.recover()
    [interrupted] = receiver.actions()
    assert interrupted["reason"].startswith("interrupted by a restart; outcome unknown")
    return receiver, recorder


@pytest.mark.parametrize("marked_running", [False, True])
def test_an_action_of_unknown_outcome_counts_toward_the_blast_radius(
    make_receiver, marked_running: bool
) -> None:
    receiver, recorder = _interrupted_on(
        make_receiver,
        "a",
        marked_running,
        blast_radius_targets=2,
        blast_radius_window_seconds=600,
    )

    receiver.clock.now += 10
    receiver.post(_payload("b"))
    receiver.post(_payload("c"))
    receiver.worker.drain()

    # host a may have been changed: with b that makes the two targets allowed.
    assert recorder.applied == ["b"]
    assert receiver.actions()[2]["reason"] == (
        "blast radius: 2 targets changed in the last 600s, at most 2"
    )


@pytest.mark.parametrize("marked_running", [False, True])
def test_an_action_of_unknown_outcome_starts_its_targets_cooldown(
    make_receiver, marked_running: bool
) -> None:
    receiver, recorder = _interrupted_on(
        make_receiver, "a", marked_running, policies=[_policy(cooldown_seconds=60)]
    )

    alert_again_within_and_after_a_cooldown_of_60s(receiver)

    _, held, applied = receiver.actions()
    assert held["reason"] == "cooldown: host a was changed 30s ago, cooldown 60s"
    assert applied["result"] == "applied"
    assert recorder.applied == ["a"]


def _previews(receiver: Receiver) -> list[tuple[str, str, str]]:
    return [(a["target"], a["result"], a["reason"]) for a in receiver.actions()]


def test_a_dry_run_says_which_plans_the_blast_radius_would_hold_back(
    make_receiver, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    receiver = _build(
        make_receiver,
        recorder,
        mode="dry-run",
        blast_radius_targets=2,
        blast_radius_window_seconds=600,
    )

    with caplog.at_level(logging.INFO, logger="alertmanager_webhook.worker"):
        for host in "abc":
            receiver.post(_payload(host))
        receiver.worker.drain()
        receiver.post(_payload("a", starts="2024-05-14T09:10:00Z"))
        receiver.worker.drain()

    held = (
        "apply would skip it: blast radius: 2 targets changed or planned in "
        "dry-run in the last 600s, at most 2"
    )
    assert _previews(receiver) == [
        ("host a", "planned", WOULD_RUN),
        ("host b", "planned", WOULD_RUN),
        ("host c", "planned", held),
        # A target planned already adds nothing to the radius, as in apply.
        ("host a", "planned", WOULD_RUN),
    ]
    assert recorder.applied == []
    assert (
        receiver.sample(
            "aiops_webhook_dry_run_held_back_total",
            action="command",
            limit="blast_radius",
        )
        == 1
    )
    assert f"plan='poke c' reason={held!r}" in caplog.text


def test_a_dry_run_says_which_plans_the_cooldown_would_hold_back(
    make_receiver,
) -> None:
    receiver = _build(
        make_receiver,
        Recorder(),
        mode="dry-run",
        policies=[_policy(cooldown_seconds=60)],
    )

    for minute, wait in (("00", 0), ("10", 30), ("20", 31)):
        receiver.clock.now += wait
        receiver.post(_payload("a", starts=f"2024-05-14T09:{minute}:00Z"))
        receiver.worker.drain()

    # Measured from the plan apply would have run, as apply measures it.
    assert [reason for _, _, reason in _previews(receiver)] == [
        WOULD_RUN,
        "apply would skip it: cooldown: host a was changed or planned in dry-run "
        "30s ago, cooldown 60s",
        WOULD_RUN,
    ]
    assert (
        receiver.sample(
            "aiops_webhook_dry_run_held_back_total", action="command", limit="cooldown"
        )
        == 1
    )


def test_a_dry_run_counts_the_changes_really_in_force_toward_the_cap(
    make_receiver,
) -> None:
    # Its own plans are never in force: only applying returns the undo that
    # keeps a change in force until its alert resolves.
    applying = _build(make_receiver, Recorder(), max_active_actions=1)
    applying.post(_payload("a"))
    applying.worker.drain()

    previewing = _build(
        make_receiver,
        Recorder(),
        own_registry=CollectorRegistry(),
        mode="dry-run",
        max_active_actions=1,
    )
    previewing.post(_payload("b"))
    previewing.worker.drain()

    assert _previews(previewing)[1] == (
        "host b",
        "planned",
        "apply would skip it: cap: 1 changes in force, at most 1",
    )
    assert (
        previewing.sample(
            "aiops_webhook_dry_run_held_back_total", action="command", limit="cap"
        )
        == 1
    )


def test_dry_run_plans_never_count_toward_the_limits_of_real_changes(
    make_receiver,
) -> None:
    settings = {"blast_radius_targets": 2, "policies": [_policy(cooldown_seconds=60)]}
    previewing = _build(make_receiver, Recorder(), mode="dry-run", **settings)
    for host in "ab":
        previewing.post(_payload(host))
    previewing.worker.drain()

    # The same database, now applying: a and b were only planned.
    recorder = Recorder()
    applying = _build(
        make_receiver, recorder, own_registry=CollectorRegistry(), **settings
    )
    applying.post(_payload("a", starts="2024-05-14T09:10:00Z"))
    applying.post(_payload("c"))
    applying.worker.drain()

    assert recorder.applied == ["a", "c"]


def test_the_held_back_series_are_preset_for_actions_in_dry_run() -> None:
    registry = CollectorRegistry()

    WebhookMetrics(registry).preset_actions(
        [("command", "dry-run"), ("renice", "apply")]
    )

    def value(action: str, limit: str) -> float | None:
        return registry.get_sample_value(
            "aiops_webhook_dry_run_held_back_total", {"action": action, "limit": limit}
        )

    assert [value("command", limit) for limit in LIMITS] == [0.0, 0.0, 0.0]
    assert value("renice", "cap") is None
