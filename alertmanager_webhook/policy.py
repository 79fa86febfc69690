"""Chooses the policy for each firing alert and collects the planned actions."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from alertmanager_webhook.actions import (
    PlannedAction,
    ProcessIterator,
    iter_processes,
    plan_action,
)
from alertmanager_webhook.config import PolicyConfig
from alertmanager_webhook.payload import Notification

log = logging.getLogger(__name__)


def select_policy(
    policies: Sequence[PolicyConfig], labels: Mapping[str, str]
) -> PolicyConfig | None:
    """Return the first policy whose match labels all equal the alert's."""
    for policy in policies:
        if all(labels.get(k) == v for k, v in policy.match.items()):
            return policy
    return None


class Planner:
    """Turns a new notification into the actions its policies decide on."""

    def __init__(
        self,
        policies: Sequence[PolicyConfig],
        mode: str,
        processes: ProcessIterator = iter_processes,
    ) -> None:
        self._policies = tuple(policies)
        self._mode = mode
        self._processes = processes

    def plan(self, notification: Notification) -> list[PlannedAction]:
        """Plan one action per firing alert that a policy matches."""
        planned = []
        for alert in notification.firing:
            policy = select_policy(self._policies, alert.labels)
            if policy is None:
                log.debug("no policy matches fingerprint=%s", alert.fingerprint)
                continue

            action = plan_action(alert, policy, self._mode, self._processes)
            log.debug(
                "planned fingerprint=%s policy=%s action=%s result=%s",
                alert.fingerprint,
                policy.name,
                action.action,
                action.result,
            )
            planned.append(action)
        return planned
