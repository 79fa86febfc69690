"""Policy choice and the dry-run plans, against an injected process list."""

from __future__ import annotations

from typing import Any

import psutil
import pytest

from alertmanager_webhook.actions import ProcessInfo, plan_action
from alertmanager_webhook.config import PolicyConfig
from alertmanager_webhook.payload import parse_notification
from alertmanager_webhook.policy import Planner, select_policy

from .conftest import FAKE_PROCESSES, make_config

CAP = PolicyConfig(
    name="cap",
    match={"command": "aiops-testcap"},
    action="cpu_cap",
    params={"cpu_cores": 0.5},
)


def _processes():
    return iter(FAKE_PROCESSES)


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


def test_planner_plans_each_firing_alert(firing: dict[str, Any]) -> None:
    config = make_config()
    planner = Planner(config.policies, config.mode, _processes)

    actions = planner.plan(parse_notification(firing))

    assert [(a.policy, a.action, a.result) for a in actions] == [
        ("cap-testcap", "cpu_cap", "planned"),
        ("watch-only", "none", "skipped"),
    ]
    assert actions[0].alert_fingerprint == "4a8c21f0b6d3e917"
    assert actions[0].mode == "dry-run"
    assert actions[0].plan == (
        "cap 2 processes command='aiops-testcap' user='root' (pids 4211, 4212) "
        "to 0.5 CPU cores with cgroup v2 cpu.max '50000 100000'"
    )
    assert actions[1].plan == "no action"


def test_planner_ignores_resolved_alerts(resolved: dict[str, Any]) -> None:
    config = make_config()
    planner = Planner(config.policies, config.mode, _processes)

    assert planner.plan(parse_notification(resolved)) == []


def test_firing_notification_skips_its_resolved_alerts(
    firing: dict[str, Any],
) -> None:
    firing["alerts"][0]["status"] = "resolved"
    config = make_config()
    planner = Planner(config.policies, config.mode, _processes)

    actions = planner.plan(parse_notification(firing))

    assert [a.alert_fingerprint for a in actions] == ["d19e07b25c4f8a36"]


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ({"command": "aiops-testcap"}, "alert has no user label"),
        ({"command": "aiops-testcap", "user": ""}, "alert has no user label"),
        ({"user": "root", "command": ""}, "alert has no command label"),
    ],
)
def test_cpu_cap_without_labels_is_skipped(
    firing: dict[str, Any], labels: dict[str, str], reason: str
) -> None:
    firing["alerts"][0]["labels"] = labels
    alert = parse_notification(firing).alerts[0]
    policy = PolicyConfig(
        name="any", match={"x": "y"}, action="cpu_cap", params={"cpu_cores": 1.0}
    )

    action = plan_action(alert, policy, "dry-run", _processes)

    assert action.result == "skipped"
    assert action.plan.startswith(reason)


def test_cpu_cap_without_processes_is_skipped(firing: dict[str, Any]) -> None:
    firing["alerts"][0]["labels"]["user"] = "svc-train"
    alert = parse_notification(firing).alerts[0]

    action = plan_action(alert, CAP, "dry-run", _processes)

    assert action.result == "skipped"
    assert action.target == "command='aiops-testcap' user='svc-train'"
    assert action.plan == (
        "no running process matches command='aiops-testcap' user='svc-train'"
    )


def test_cpu_cap_that_cannot_list_processes_fails(firing: dict[str, Any]) -> None:
    def denied():
        raise psutil.AccessDenied(pid=1)
        yield  # pragma: no cover

    alert = parse_notification(firing).alerts[0]

    action = plan_action(alert, CAP, "dry-run", denied)

    assert action.result == "failed"
    assert action.plan.startswith("cannot list processes")


def test_cpu_cap_plan_stays_short_for_wide_matches(firing: dict[str, Any]) -> None:
    many = [ProcessInfo(1000 + i, "aiops-testcap", "root") for i in range(25)]
    alert = parse_notification(firing).alerts[0]

    action = plan_action(alert, CAP, "dry-run", lambda: iter(many))

    assert action.plan.startswith("cap 25 processes")
    assert "1019 and 5 more)" in action.plan
    assert "1020" not in action.plan


def test_label_values_are_quoted_in_the_plan(firing: dict[str, Any]) -> None:
    hostile = "x'; rm -rf /\n"
    firing["alerts"][0]["labels"]["command"] = hostile
    procs = [ProcessInfo(7, hostile, "root")]
    alert = parse_notification(firing).alerts[0]

    action = plan_action(alert, CAP, "dry-run", lambda: iter(procs))

    assert "\n" not in action.plan
    assert repr(hostile) in action.plan
