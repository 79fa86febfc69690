"""The SQLite schema of the receiver's database, besides the audit table.

Actions are the queue: their `result` moves from queued through the states
below, and a UNIQUE index on (alert episode, policy, kind) keeps one action
per alert episode however often the alert is delivered.
"""

from __future__ import annotations

SCHEMA_VERSION = 2

# queued: waiting for the worker, or being applied for less than a second
# (admissions.py); pending: waiting for a person; approved: waiting for the
# worker after approval, or as queued; running: being applied for longer (a
# crash leaves it so); the others are final. A dry run's plan (planned) has
# a started_unix only if apply would have run it: when apply would have
# started it, which the next plans' preview of the limits counts (limits.py).
RESULTS = (
    "queued",
    "planned",
    "pending",
    "approved",
    "running",
    "applied",
    "skipped",
    "refused",
    "failed",
    "cancelled",
)
FINAL = ("planned", "applied", "skipped", "refused", "failed", "cancelled")

SCHEMA = f"""
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
-- Each notification's audit digest and its report read its alerts: without
-- this, every notification scanned the whole table.
CREATE INDEX IF NOT EXISTS alerts_by_notification ON alerts (notification_id);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES notifications (id),
    alert_fingerprint TEXT NOT NULL,
    alert_starts_at TEXT NOT NULL,
    labels TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('act', 'restore')),
    policy TEXT NOT NULL,
    action TEXT NOT NULL,
    mode TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    plan TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL CHECK (result IN ({", ".join(f"'{r}'" for r in RESULTS)})),
    reason TEXT NOT NULL DEFAULT '',
    spec TEXT,
    undo TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    approved_by TEXT NOT NULL DEFAULT '',
    restores INTEGER REFERENCES actions (id),
    restored_at TEXT,
    received_unix REAL NOT NULL,
    started_unix REAL,
    finished_unix REAL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS actions_once
    ON actions (alert_fingerprint, alert_starts_at, policy, kind);
CREATE INDEX IF NOT EXISTS actions_by_result ON actions (result, not_before);
CREATE INDEX IF NOT EXISTS actions_by_target ON actions (target, action);
CREATE INDEX IF NOT EXISTS actions_by_start ON actions (started_unix);
CREATE INDEX IF NOT EXISTS actions_by_notification ON actions (notification_id);
CREATE INDEX IF NOT EXISTS actions_held ON actions (id) WHERE result = 'applied'
    AND kind = 'act' AND undo IS NOT NULL AND restored_at IS NULL;
"""
