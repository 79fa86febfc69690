"""The audit log of notifications, alerts and planned actions; needs SQLite.

A notification, its alerts and its actions are written in one transaction, and
a UNIQUE dedupe key makes a resent notification a no-op.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from alertmanager_webhook.actions import PlannedAction
from alertmanager_webhook.payload import Notification

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    dedupe_key TEXT NOT NULL UNIQUE,
    group_key TEXT NOT NULL,
    receiver TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    truncated_alerts INTEGER NOT NULL,
    external_url TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES notifications (id),
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    generator_url TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_fingerprint ON alerts (fingerprint);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES notifications (id),
    alert_fingerprint TEXT NOT NULL,
    policy TEXT NOT NULL,
    action TEXT NOT NULL,
    mode TEXT NOT NULL,
    target TEXT NOT NULL,
    plan TEXT NOT NULL,
    result TEXT NOT NULL CHECK (result IN ('planned', 'skipped', 'failed')),
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_by_fingerprint ON actions (alert_fingerprint);
"""

Clock = Callable[[], datetime]


class StoreError(Exception):
    """The database could not be read or written; the request may be retried."""


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


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Store:
    """One SQLite connection in WAL mode, shared by the server's threads."""

    def __init__(self, conn: sqlite3.Connection, clock: Clock = _utc_now) -> None:
        self._conn = conn
        self._clock = clock
        # The connection is shared across threads; sqlite3 needs the calls apart.
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str, clock: Clock = _utc_now) -> Store:
        """Open or create the database at `path` and make sure the schema exists."""
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.executescript(SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path!r}: {exc}") from exc
        return cls(conn, clock)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def is_known(self, key: str) -> bool:
        """Tell whether a notification with this dedupe key is already stored."""
        row = self._query("SELECT 1 FROM notifications WHERE dedupe_key = ?", (key,))
        return bool(row)

    def save(
        self, notification: Notification, key: str, actions: Sequence[PlannedAction]
    ) -> int | None:
        """Store a notification with its alerts and actions; None if a duplicate."""
        now = self._clock().isoformat()
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    notification_id = self._insert(notification, key, actions, now)
                except sqlite3.IntegrityError as exc:
                    self._conn.execute("ROLLBACK")
                    # Another delivery of the same notification won the race.
                    if "notifications.dedupe_key" in str(exc):
                        return None
                    raise
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot store notification: {exc}") from exc
        return notification_id

    def recent_alerts(self, limit: int) -> list[dict[str, Any]]:
        """Return the newest alert rows first, with labels decoded."""
        rows = self._query(
            "SELECT a.id, a.notification_id, n.received_at, a.fingerprint, a.status,"
            " a.labels, a.annotations, a.starts_at, a.ends_at, a.generator_url"
            " FROM alerts a JOIN notifications n ON n.id = a.notification_id"
            " ORDER BY a.id DESC LIMIT ?",
            (limit,),
        )
        records = [dict(row) for row in rows]
        for record in records:
            record["labels"] = json.loads(record["labels"])
            record["annotations"] = json.loads(record["annotations"])
        return records

    def recent_actions(self, limit: int) -> list[dict[str, Any]]:
        """Return the newest action rows first."""
        rows = self._query("SELECT * FROM actions ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(row) for row in rows]

    def _insert(
        self,
        notification: Notification,
        key: str,
        actions: Sequence[PlannedAction],
        now: str,
    ) -> int:
        cursor = self._conn.execute(
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
                now,
            ),
        )
        notification_id = cursor.lastrowid
        assert notification_id is not None

        self._conn.executemany(
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

        self._conn.executemany(
            "INSERT INTO actions (notification_id, alert_fingerprint, policy, action,"
            " mode, target, plan, result, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    notification_id,
                    a.alert_fingerprint,
                    a.policy,
                    a.action,
                    a.mode,
                    a.target,
                    a.plan,
                    a.result,
                    now,
                )
                for a in actions
            ],
        )
        return notification_id

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read database: {exc}") from exc
