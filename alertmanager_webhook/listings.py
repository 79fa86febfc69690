"""The newest alerts and actions as the API lists them, JSON columns decoded,
a page at a time: the next page is the rows before the last id of this one.

Reads through the Store's shared connection; writes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from alertmanager_webhook.store import LARGEST_ID, Store


def recent_alerts(
    store: Store, limit: int, before: int = LARGEST_ID
) -> list[dict[str, Any]]:
    """Return the newest alert rows with an id under `before` first, with
    labels decoded."""
    rows = store.query(
        "SELECT a.id, a.notification_id, n.received_at, a.fingerprint, a.status,"
        " a.labels, a.annotations, a.starts_at, a.ends_at, a.generator_url"
        " FROM alerts a JOIN notifications n ON n.id = a.notification_id"
        " WHERE a.id < ? ORDER BY a.id DESC LIMIT ?",
        [before, limit],
    )
    records = [dict(row) for row in rows]
    for record in records:
        record["labels"] = json.loads(record["labels"])
        record["annotations"] = json.loads(record["annotations"])
    return records


def recent_actions(
    store: Store, limit: int, before: int = LARGEST_ID
) -> list[dict[str, Any]]:
    """Return the newest action rows with an id under `before` first, JSON
    columns decoded."""
    rows = store.query(
        "SELECT * FROM actions WHERE id < ? ORDER BY id DESC LIMIT ?",
        [before, limit],
    )
    return [decode_action(row) for row in rows]


def decode_action(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    record["labels"] = json.loads(record["labels"])
    for name in ("spec", "undo"):
        record[name] = json.loads(record[name]) if record[name] else None
    return record
