"""The cooldown and the blast radius count what may have changed a target."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alertmanager_webhook.actuators.base import Outcome
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.worker import Worker

from .conftest import Receiver, make_config
from .test_worker import Recorder, _payload, _policy


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

    receiver.clock.now += 30
    receiver.post(_payload("a", starts="2024-05-14T09:10:00Z"))
    receiver.worker.drain()
    receiver.clock.now += 31
    receiver.post(_payload("a", starts="2024-05-14T09:20:00Z"))
    receiver.worker.drain()

    _, held, applied = receiver.actions()
    assert held["reason"] == "cooldown: host a was changed 30s ago, cooldown 60s"
    assert applied["result"] == "applied"
    assert recorder.applied == ["a"]
