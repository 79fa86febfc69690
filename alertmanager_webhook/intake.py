"""What one notification writes: its row, its alerts, its queued actions, audit.

Runs inside the caller's write transaction. A firing alert a policy matches
queues one action; a resolved alert queues a restore for each action of its
episode. Both are INSERT OR IGNORE against a UNIQUE index, so an alert that
arrives again, in this or another group, queues nothing more.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alertmanager_webhook import audit
from alertmanager_webhook.payload import Alert, Notification


@dataclass(frozen=True)
class Intent:
    """An action a policy asks for on one firing alert, before any planning."""

    alert: Alert
    policy: str
    action: str
    mode: str


@dataclass(frozen=True)
class Saved:
    """What one stored notification queued: (id, action, mode, result) per action."""

    notification_id: int
    actions: tuple[tuple[int, str, str, str], ...]


def dedupe_key(notification: Notification) -> str:
    """Hash what makes a notification new: its group, status and alert states.

    Alertmanager resends a group unchanged on every repeat_interval and on
    retries; those resends hash alike, so they are acted on once.
    """
    alerts = sorted([a.fingerprint, a.status, a.starts_at] for a in notification.alerts)
    # JSON keeps the fields apart, so no value can imitate a separator.
    material = json.dumps(
        [notification.group_key, notification.status, alerts], separators=(",", ":")
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def insert(
    conn: sqlite3.Connection,
    notification: Notification,
    key: str,
    intents: Sequence[Intent],
    now: datetime,
    kept_policies: frozenset[str] = frozenset(),
) -> Saved:
    """Write the notification and what it queues; raises sqlite3.Error."""
    stamp = now.isoformat()
    cursor = conn.execute(
        "INSERT INTO notifications (dedupe_key, group_key, receiver, status,"
        " truncated_alerts, external_url, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            notification.group_key,
            notification.receiver,
            notification.status,
            notification.truncated_alerts,
            notification.external_url,
            stamp,
        ),
    )
    notification_id = cursor.lastrowid
    assert notification_id is not None

    conn.executemany(
        "INSERT INTO alerts (notification_id, fingerprint, status, labels,"
        " annotations, starts_at, ends_at, generator_url)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                notification_id,
                a.fingerprint,
                a.status,
                json.dumps(dict(a.labels), sort_keys=True),
                json.dumps(dict(a.annotations), sort_keys=True),
                a.starts_at,
                a.ends_at,
                a.generator_url,
            )
            for a in notification.alerts
        ],
    )

    queued = []
    for intent in intents:
        # The `none` action needs no worker: it is decided here.
        result, plan = (
            ("skipped", "no action")
            if intent.action == "none"
            else (
                "queued",
                "",
            )
        )
        queued.append(_queue(conn, notification_id, intent, "act", result, plan, now))
    for alert in notification.alerts:
        if alert.status == "resolved":
            queued.extend(
                _queue_restores(conn, notification_id, alert, now, kept_policies)
            )

    audit.append(
        conn,
        stamp,
        "notification",
        f"notification:{notification_id}",
        notification_digest(conn, notification_id),
    )
    for action_id, *_ in (q for q in queued if q is not None):
        audit.append_action(conn, stamp, action_id)
    return Saved(notification_id, tuple(q for q in queued if q is not None))


def _queue(
    conn: sqlite3.Connection,
    notification_id: int,
    intent: Intent,
    kind: str,
    result: str,
    plan: str,
    now: datetime,
    restores: int | None = None,
) -> tuple[int, str, str, str] | None:
    # OR IGNORE: the same alert episode in another group's notification.
    cursor = conn.execute(
        "INSERT OR IGNORE INTO actions (notification_id, alert_fingerprint,"
        " alert_starts_at, labels, kind, policy, action, mode, plan, result,"
        " restores, received_unix, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            notification_id,
            intent.alert.fingerprint,
            intent.alert.starts_at,
            json.dumps(dict(intent.alert.labels), sort_keys=True),
            kind,
            intent.policy,
            intent.action,
            intent.mode,
            plan,
            result,
            restores,
            now.timestamp(),
            now.isoformat(),
            now.isoformat(),
        ),
    )
    if not cursor.rowcount:
        return None
    assert cursor.lastrowid is not None
    return cursor.lastrowid, intent.action, intent.mode, result


def _queue_restores(
    conn: sqlite3.Connection,
    notification_id: int,
    alert: Alert,
    now: datetime,
    kept_policies: frozenset[str],
) -> list[tuple[int, str, str, str] | None]:
    originals = conn.execute(
        "SELECT id, policy, action, mode FROM actions WHERE kind = 'act'"
        " AND alert_fingerprint = ? AND alert_starts_at = ? AND action != 'none'",
        (alert.fingerprint, alert.starts_at),
    ).fetchall()
    return [
        _queue(
            conn,
            notification_id,
            Intent(alert, row["policy"], row["action"], row["mode"]),
            "restore",
            "queued",
            "",
            now,
            restores=row["id"],
        )
        for row in originals
        if row["policy"] not in kept_policies
    ]


def notification_digest(
    conn: sqlite3.Connection, notification_id: int
) -> dict[str, Any]:
    """What a notification's audit record vouches for, rebuilt from its rows."""
    row = conn.execute(
        "SELECT * FROM notifications WHERE id = ?", (notification_id,)
    ).fetchone()
    alerts = conn.execute(
        "SELECT fingerprint, status, starts_at, ends_at, labels, annotations,"
        " generator_url FROM alerts WHERE notification_id = ? ORDER BY id",
        (notification_id,),
    ).fetchall()
    detail = {k: row[k] for k in row.keys()}  # noqa: SIM118 (sqlite3.Row)
    detail["alerts"] = [
        [a[0], a[1], a[2], a[3], _digest(a[4]), _digest(a[5]), a[6]] for a in alerts
    ]
    return detail
