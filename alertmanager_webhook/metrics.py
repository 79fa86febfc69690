"""The receiver's own metrics, declared in one place on a registry the app owns."""

from __future__ import annotations

import typing

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from alertmanager_webhook.actions import RESULTS
from alertmanager_webhook.config import ActionName
from alertmanager_webhook.payload import STATUSES

# accepted: new and stored; duplicate: seen before; rejected: bad request body
# (400, 413); failed: the database failed and Alertmanager was told to retry.
NOTIFICATION_RESULTS = ("accepted", "duplicate", "rejected", "failed")


class WebhookMetrics:
    """Counters of what the receiver was sent and what it planned."""

    def __init__(self, registry: CollectorRegistry, mode: str) -> None:
        self.registry = registry
        self.notifications = Counter(
            "aiops_webhook_notifications_total",
            "Webhook notifications received, by outcome.",
            ["result"],
            registry=registry,
        )
        self.alerts = Counter(
            "aiops_webhook_alerts_total",
            "Alerts in accepted notifications, by alert status.",
            ["status"],
            registry=registry,
        )
        self.actions = Counter(
            "aiops_webhook_actions_total",
            "Actions recorded for firing alerts, by action, mode and result.",
            ["action", "mode", "result"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "aiops_webhook_auth_failures_total",
            "Requests refused for a missing or wrong bearer token.",
            registry=registry,
        )
        self.last_accepted = Gauge(
            "aiops_webhook_last_accepted_timestamp_seconds",
            "Unix time of the last notification accepted; 0 before the first.",
            registry=registry,
        )
        self.request_duration = Histogram(
            "aiops_webhook_request_duration_seconds",
            "Time to answer an HTTP request, by handler.",
            ["handler"],
            registry=registry,
        )

        # Pre-set so that rate() and absence alerts work before the first event.
        for result in NOTIFICATION_RESULTS:
            self.notifications.labels(result)
        for status in STATUSES:
            self.alerts.labels(status)
        for action in typing.get_args(ActionName):
            for result in RESULTS:
                self.actions.labels(action, mode, result)
