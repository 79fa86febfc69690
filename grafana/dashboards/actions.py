"""Actions: what the receiver was sent by Alertmanager and what it did about
it, by action, mode and result, with its queue and latencies."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.dashboards.panels import Board, instant, q, stat, table
from grafana.dashboards.panels import timeseries as ts
from grafana.dashboards.promql import RANGE, increase, quantile, sel

UID = "aiops-actions"


def build() -> Dashboard:
    board = Board(
        UID,
        "prom-aiops / Actions",
        "Notifications the receiver accepted and the actions it planned, ran "
        "or refused.",
    )

    board.row("Now")
    board.add(
        stat(
            "Notifications in range",
            "Notifications accepted over the time range.",
            "short",
            instant(
                "sum("
                + increase(
                    sel("aiops_webhook_notifications_total", result="accepted"), RANGE
                )
                + ")"
            ),
        ),
        stat(
            "Actions applied in range",
            "Actions that changed something over the time range.",
            "short",
            instant(
                "sum("
                + increase(sel("aiops_webhook_actions_total", result="applied"), RANGE)
                + ")"
            ),
        ),
        stat(
            "Actions failed in range",
            "Actions whose actuator failed over the time range.",
            "short",
            instant(
                "sum("
                + increase(sel("aiops_webhook_actions_total", result="failed"), RANGE)
                + ")"
            ),
            red_above=1,
        ),
        stat(
            "Waiting for approval",
            "Actions pending a person's approval.",
            "short",
            instant(f"sum({sel('aiops_webhook_queue_depth', state='pending')})"),
        ),
        stat(
            "Since last notification",
            "Time since the receiver last accepted a notification.",
            "s",
            instant("time() - max(aiops_webhook_last_accepted_timestamp_seconds > 0)"),
            width=8,
        ),
    )

    board.row("Intake")
    board.add(
        ts(
            "Notifications by result",
            "accepted: new and stored; duplicate: a resend; rejected: a bad "
            "request; failed: storage failed and Alertmanager will retry.",
            "cps",
            q(
                "sum by (result) (rate(aiops_webhook_notifications_total"
                "[$__rate_interval]))",
                "{{result}}",
            ),
        ),
        ts(
            "Alerts received by status",
            "Alerts in accepted notifications, firing or resolved.",
            "cps",
            q(
                "sum by (status) (rate(aiops_webhook_alerts_total[$__rate_interval]))",
                "{{status}}",
            ),
        ),
    )

    board.row("Actions")
    board.add(
        table(
            "Actions by action, mode and result",
            "Actions that reached a result over the time range.",
            instant(
                "sum by (action, mode, result) ("
                + increase("aiops_webhook_actions_total", RANGE)
                + ")",
                table=True,
            ),
            width=12,
        ),
        table(
            "Restores by action and result",
            "Reversible actions undone when their alert resolved.",
            instant(
                "sum by (action, result) ("
                + increase("aiops_webhook_restores_total", RANGE)
                + ")",
                table=True,
            ),
            width=12,
        ),
        ts(
            "Queue by state",
            "Actions queued or approved for the worker, pending a person, or running.",
            "short",
            q("sum by (state) (aiops_webhook_queue_depth)", "{{state}}"),
            width=8,
        ),
        ts(
            "Time to result (p50, p99)",
            "From a notification's arrival to its action's result.",
            "s",
            q(
                quantile(0.5, "aiops_webhook_action_latency_seconds", ("action",)),
                "{{action}} p50",
            ),
            q(
                quantile(0.99, "aiops_webhook_action_latency_seconds", ("action",)),
                "{{action}} p99",
            ),
            width=8,
        ),
        ts(
            "Actuator time (p99)",
            "Time an actuator took to apply or restore; only actions that ran "
            "(not dry-run plans).",
            "s",
            q(
                quantile(0.99, "aiops_webhook_apply_duration_seconds", ("action",)),
                "{{action}}",
            ),
            width=8,
        ),
    )
    return board.build()
