"""Chooses the policy for each firing alert; what it asks for is queued as intents.

Choosing reads labels only, so it runs in the request; planning, which looks
at processes and clusters, runs in the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from alertmanager_webhook.config import WebhookConfig, policy_mode
from alertmanager_webhook.intake import Intent
from alertmanager_webhook.payload import Notification
from alertmanager_webhook.policy_config import PolicyConfig

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
    """Turns a new notification into one intent per firing alert a policy matches."""

    def __init__(self, config: WebhookConfig) -> None:
        self._config = config

    def intents(self, notification: Notification) -> list[Intent]:
        chosen = []
        for alert in notification.firing:
            policy = select_policy(self._config.policies, alert.labels)
            if policy is None:
                log.debug("no policy matches fingerprint=%r", alert.fingerprint)
                continue
            mode = policy_mode(self._config, policy)
            chosen.append(Intent(alert, policy.name, policy.action, mode))
        return chosen

    def kept_policies(self) -> frozenset[str]:
        """Policies whose changes a resolved alert leaves in force."""
        return frozenset(
            p.name for p in self._config.policies if not p.restore_on_resolve
        )
