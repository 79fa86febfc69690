"""The receiver's own metrics, declared in one place on a registry the app owns."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from alertmanager_webhook.payload import STATUSES

# accepted: new and stored; duplicate: seen before; rejected: bad request body
# (400, 413); failed: the database failed and Alertmanager was told to retry.
NOTIFICATION_RESULTS = ("accepted", "duplicate", "rejected", "failed")

# What an action ends as (pending waits for a person, but is counted when reached).
ACTION_RESULTS = (
    "planned",
    "pending",
    "applied",
    "skipped",
    "refused",
    "failed",
    "cancelled",
)
RESTORE_RESULTS = ("applied", "skipped", "failed")
QUEUE_STATES = ("queued", "approved", "pending", "running")
# The limits that hold an action back (limits.py).
LIMITS = ("cooldown", "cap", "blast_radius")
# process: the worker's own process died or could not be started.
WORKER_STAGES = ("plan", "apply", "restore", "store", "process")

# From a millisecond (a dry-run plan) to minutes (an approval).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# A notification is answered in about a millisecond: with the client's
# default buckets, which start at 5 ms, every answer fell in the first and a
# dashboard's p99 read 4.95 ms whatever it was.
REQUEST_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    5,
    10,
)


class WebhookMetrics:
    """Counters of what the receiver was sent, what it did and how fast."""

    def __init__(self, registry: CollectorRegistry) -> None:
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
            "Actions for firing alerts that reached a result, by action, mode "
            "and result.",
            ["action", "mode", "result"],
            registry=registry,
        )
        self.restores = Counter(
            "aiops_webhook_restores_total",
            "Restores for resolved alerts, by action and result.",
            ["action", "result"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "aiops_webhook_auth_failures_total",
            "Requests refused for missing or wrong credentials.",
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
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "aiops_webhook_queue_depth",
            "Actions waiting, by state: queued or approved for the worker, "
            "pending a person, running for over a second.",
            ["state"],
            registry=registry,
        )
        self.action_latency = Histogram(
            "aiops_webhook_action_latency_seconds",
            "Time from a notification's arrival to its action's result, by action.",
            ["action"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.dry_run_held_back = Counter(
            "aiops_webhook_dry_run_held_back_total",
            "Dry-run plans that apply would have skipped, by action and the "
            "limit that would have held them back: cooldown, cap or blast_radius.",
            ["action", "limit"],
            registry=registry,
        )
        self.apply_duration = Histogram(
            "aiops_webhook_apply_duration_seconds",
            "Time an actuator took to apply or restore, by action.",
            ["action"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.worker_errors = Counter(
            "aiops_webhook_worker_errors_total",
            "Worker failures that were not an action's own failure, by stage.",
            ["stage"],
            registry=registry,
        )
        self.worker_last_success = Gauge(
            "aiops_webhook_worker_last_success_timestamp_seconds",
            "Unix time the worker last emptied its ready queue.",
            registry=registry,
        )

        # Pre-set so that rate() and absence alerts work before the first event.
        for result in NOTIFICATION_RESULTS:
            self.notifications.labels(result)
        for status in STATUSES:
            self.alerts.labels(status)
        for state in QUEUE_STATES:
            self.queue_depth.labels(state)
        for stage in WORKER_STAGES:
            self.worker_errors.labels(stage)

    def preset_actions(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Pre-set the action series of the configured (action, mode) pairs."""
        for action, mode in pairs:
            for result in ACTION_RESULTS:
                self.actions.labels(action, mode, result)
            for result in RESTORE_RESULTS:
                self.restores.labels(action, result)
            for limit in LIMITS if mode == "dry-run" else ():
                self.dry_run_held_back.labels(action, limit)
