"""Policy choice at intake: first match wins, and the mode a policy runs in."""

from __future__ import annotations

from typing import Any

import pytest

from alertmanager_webhook.config import policy_mode
from alertmanager_webhook.payload import parse_notification
from alertmanager_webhook.policy import Planner, select_policy

from .conftest import make_config


def test_first_matching_policy_wins() -> None:
    policies = make_config().policies

    assert select_policy(policies, {"alertname": "AiopsProcessCpuHog"}).name == (
        "watch-only"
    )
    chosen = select_policy(
        policies, {"alertname": "AiopsProcessCpuHog", "command": "aiops-testcap"}
    )
    assert chosen.name == "cap-testcap"
    assert select_policy(policies, {"alertname": "Other"}) is None


def test_planner_chooses_for_each_firing_alert(firing: dict[str, Any]) -> None:
    intents = Planner(make_config()).intents(parse_notification(firing))

    assert [(i.policy, i.action, i.mode) for i in intents] == [
        ("cap-testcap", "cpu_cap", "dry-run"),
        ("watch-only", "none", "dry-run"),
    ]
    assert intents[0].alert.fingerprint == "4a8c21f0b6d3e917"


def test_planner_ignores_resolved_alerts(resolved: dict[str, Any]) -> None:
    assert Planner(make_config()).intents(parse_notification(resolved)) == []


def test_firing_notification_skips_its_resolved_alerts(
    firing: dict[str, Any],
) -> None:
    firing["alerts"][0]["status"] = "resolved"

    intents = Planner(make_config()).intents(parse_notification(firing))

    assert [i.alert.fingerprint for i in intents] == ["d19e07b25c4f8a36"]


@pytest.mark.parametrize(
    ("receiver", "policy", "expected"),
    [
        ("apply", "", "apply"),
        ("apply", "approve", "approve"),
        ("approve", "apply", "approve"),
        ("dry-run", "apply", "dry-run"),
        ("apply", "dry-run", "dry-run"),
    ],
)
def test_policy_mode_is_the_more_cautious(receiver, policy, expected) -> None:
    config = make_config(
        mode=receiver,
        policies=[{"name": "p", "match": {"a": "b"}, "action": "none", "mode": policy}],
    )

    assert policy_mode(config, config.policies[0]) == expected
