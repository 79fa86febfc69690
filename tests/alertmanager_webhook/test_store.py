"""The SQLite audit log: schema, WAL, one transaction per notification, dedupe."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from alertmanager_webhook.actions import PlannedAction
from alertmanager_webhook.payload import parse_notification
from alertmanager_webhook.store import Store, StoreError, dedupe_key

FIXED = datetime(2024, 5, 14, 9, 40, tzinfo=UTC)

ACTION = PlannedAction(
    alert_fingerprint="4a8c21f0b6d3e917",
    policy="cap-testcap",
    action="cpu_cap",
    mode="dry-run",
    target="command='aiops-testcap' user='root'",
    plan="cap 1 process ...",
    result="planned",
)


@pytest.fixture
def fixed_store(tmp_path: Path):
    opened = Store.open(str(tmp_path / "audit.db"), clock=lambda: FIXED)
    yield opened
    opened.close()


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_database_is_in_wal_mode(tmp_path: Path, store: Store) -> None:
    with sqlite3.connect(tmp_path / "webhook.db") as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]

    assert mode == "wal"
    assert version == 1


def test_save_writes_notification_alerts_and_actions(
    tmp_path: Path, fixed_store: Store, firing: dict[str, Any]
) -> None:
    notification = parse_notification(firing)

    saved = fixed_store.save(notification, dedupe_key(notification), [ACTION])

    assert saved == 1
    db = tmp_path / "audit.db"
    assert (_count(db, "notifications"), _count(db, "alerts")) == (1, 2)
    [action] = fixed_store.recent_actions(10)
    assert action["plan"] == "cap 1 process ..."
    assert action["created_at"] == "2024-05-14T09:40:00+00:00"
    assert action["notification_id"] == 1
    alerts = fixed_store.recent_alerts(10)
    # Newest first, labels decoded back into objects.
    assert [a["fingerprint"] for a in alerts] == [
        "d19e07b25c4f8a36",
        "4a8c21f0b6d3e917",
    ]
    assert alerts[1]["labels"]["command"] == "aiops-testcap"
    assert alerts[1]["received_at"] == "2024-05-14T09:40:00+00:00"


def test_second_save_of_same_key_is_a_duplicate(
    tmp_path: Path, store: Store, firing: dict[str, Any]
) -> None:
    notification = parse_notification(firing)
    key = dedupe_key(notification)

    assert store.save(notification, key, [ACTION]) == 1
    assert store.is_known(key)
    assert store.save(notification, key, [ACTION]) is None

    db = tmp_path / "webhook.db"
    assert (_count(db, "notifications"), _count(db, "actions")) == (1, 1)


def test_failed_write_leaves_nothing_behind(
    tmp_path: Path, store: Store, firing: dict[str, Any]
) -> None:
    db = tmp_path / "webhook.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE actions")
    notification = parse_notification(firing)

    with pytest.raises(StoreError, match="no such table: actions"):
        store.save(notification, dedupe_key(notification), [ACTION])

    assert (_count(db, "notifications"), _count(db, "alerts")) == (0, 0)


def test_unopenable_database_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open database"):
        Store.open(str(tmp_path / "no-such-dir" / "x.db"))


def test_dedupe_key_ignores_alert_order_and_annotations(
    firing: dict[str, Any],
) -> None:
    key = dedupe_key(parse_notification(firing))

    firing["alerts"].reverse()
    firing["alerts"][0]["annotations"]["description"] = "reworded"
    firing["commonAnnotations"] = {}

    assert dedupe_key(parse_notification(firing)) == key


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("groupKey",), '{}:{alertname="Other"}'),
        (("status",), "resolved"),
        (("alerts", 0, "status"), "resolved"),
        (("alerts", 1, "fingerprint"), "0000000000000001"),
        # A new episode of the same alert starts at a new time.
        (("alerts", 0, "startsAt"), "2024-05-14T11:00:00Z"),
    ],
)
def test_dedupe_key_changes_with_what_makes_news(
    firing: dict[str, Any], path: tuple[Any, ...], value: str
) -> None:
    key = dedupe_key(parse_notification(firing))

    node: Any = firing
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value

    assert dedupe_key(parse_notification(firing)) != key
