"""The newest alerts and actions as the API lists them, JSON columns decoded.

Reads through the Store's shared connection; writes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from alertmanager_webhook.store import Store


def recent_alerts(store: Store, limit: int) -> list[dict[str, Any]]:
    """Return the newest alert rows first, with labels decoded."""
    rows = store.query(
        "SELECT a.id, a.notification_id, n.received_at, a.fingerprint, a.status,"
        " a.labels, a.annotations, a.starts_at, a.ends_at, a.generator_url"
        " FROM alerts a JOIN notifications n ON n.id = a.notification_id"
        " ORDER BY a.id DESC LIMIT ?",
        [limit],
    )
    records = [dict(row) for row in rows]
    for record in records:
        record["labels"] = json.loads(record["labels"])
        record["annotations"] = json.loads(record["annotations"])
    return records


def recent_actions(store: Store, limit: int) -> list[dict[str, Any]]:
    """Return the newest action rows first, JSON columns decoded."""
    rows = store.query("SELECT * FROM actions ORDER BY id DESC LIMIT ?", [limit])
    return [decode_action(row) for row in rows]


def decode_action(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    record["labels"] = json.loads(record["labels"])
    for name in ("spec", "undo"):
        record[name] = json.loads(record[name]) if record[name] else None
    return record
