"""The SQLite store: schema, WAL, one transaction per notification, dedupe."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alertmanager_webhook import audit
from alertmanager_webhook.audit_head import Head, HeadFile
from alertmanager_webhook.database_file import PAGE_BYTES
from alertmanager_webhook.intake import Intent, dedupe_key
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.listings import recent_actions, recent_alerts
from alertmanager_webhook.payload import parse_notification
from alertmanager_webhook.store import Store
from alertmanager_webhook.store_errors import StoreError


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _intents(notification, policy: str = "cap-testcap", action: str = "cpu_cap"):
    return [Intent(a, policy, action, "apply") for a in notification.firing]


def test_database_is_in_wal_mode_with_full_sync(tmp_path: Path, store: Store) -> None:
    with sqlite3.connect(tmp_path / "webhook.db") as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]

    assert mode == "wal"
    assert version == 2
    assert store.query("PRAGMA synchronous")[0][0] == 2  # FULL


def test_save_writes_notification_alerts_actions_and_audit(
    tmp_path: Path, store: Store, firing: dict[str, Any]
) -> None:
    notification = parse_notification(firing)

    saved = store.save(notification, dedupe_key(notification), _intents(notification))

    assert saved is not None
    assert saved.notification_id == 1
    assert [a[1:] for a in saved.actions] == [("cpu_cap", "apply", "queued")] * 2
    db = tmp_path / "webhook.db"
    assert (_count(db, "notifications"), _count(db, "alerts")) == (1, 2)
    # One record for the notification, one per action.
    assert _count(db, "audit") == 3
    action = recent_actions(store, 10)[-1]
    assert action["labels"]["command"] == "aiops-testcap"
    assert action["created_at"] == "2024-05-14T09:30:00+00:00"
    alerts = recent_alerts(store, 10)
    # Newest first, labels decoded back into objects.
    assert [a["fingerprint"] for a in alerts] == [
        "d19e07b25c4f8a36",
        "4a8c21f0b6d3e917",
    ]
    assert alerts[1]["received_at"] == "2024-05-14T09:30:00+00:00"


def test_none_action_is_decided_at_intake(store: Store, firing) -> None:
    notification = parse_notification(firing)

    saved = store.save(
        notification, dedupe_key(notification), _intents(notification, "w", "none")
    )

    assert [a[3] for a in saved.actions] == ["skipped", "skipped"]
    assert recent_actions(store, 1)[0]["plan"] == "no action"


def test_second_save_of_same_key_is_a_duplicate(
    tmp_path: Path, store: Store, firing: dict[str, Any]
) -> None:
    notification = parse_notification(firing)
    key = dedupe_key(notification)

    assert store.save(notification, key, _intents(notification)) is not None
    assert store.is_known(key)
    assert store.save(notification, key, _intents(notification)) is None

    db = tmp_path / "webhook.db"
    assert (_count(db, "notifications"), _count(db, "actions")) == (1, 2)


def test_resolved_alert_queues_a_restore_per_action(
    store: Store, firing: dict[str, Any], resolved: dict[str, Any]
) -> None:
    fired = parse_notification(firing)
    store.save(fired, dedupe_key(fired), _intents(fired))
    done = parse_notification(resolved)

    saved = store.save(done, dedupe_key(done), [])

    [restore] = recent_actions(store, 1)
    assert [a[3] for a in saved.actions] == ["queued"]
    assert (restore["kind"], restore["restores"]) == ("restore", 1)


def test_a_kept_policy_queues_no_restore(
    store: Store, firing: dict[str, Any], resolved: dict[str, Any]
) -> None:
    fired = parse_notification(firing)
    intents = _intents(fired)
    store.save(fired, dedupe_key(fired), intents)
    done = parse_notification(resolved)

    saved = store.save(
        done, dedupe_key(done), [], kept_policies=frozenset({intents[0].policy})
    )

    assert saved is not None and saved.actions == ()
    assert all(a["kind"] == "act" for a in recent_actions(store, 10))


def test_failed_write_leaves_nothing_behind(
    tmp_path: Path, store: Store, firing: dict[str, Any]
) -> None:
    db = tmp_path / "webhook.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE actions")
    notification = parse_notification(firing)

    with pytest.raises(StoreError, match="no such table: actions"):
        store.save(notification, dedupe_key(notification), _intents(notification))

    assert (_count(db, "notifications"), _count(db, "alerts")) == (0, 0)


def test_unopenable_database_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open database"):
        Store.open(str(tmp_path / "no-such-dir" / "x.db"))


def test_older_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 1")

    with pytest.raises(StoreError, match="has schema 1, this receiver writes 2"):
        Store.open(str(path))


def test_open_existing_never_creates(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database at"):
        Store.open_existing(str(tmp_path / "absent.db"))

    assert not (tmp_path / "absent.db").exists()


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


def test_saving_a_notification_scans_no_table(
    tmp_path: Path, store: Store, firing: dict[str, Any]
) -> None:
    # Every statement of the hot path must find its rows through an index:
    # a full scan grows with the database, and so would the answer's latency.
    notification = parse_notification(firing)
    selects: list[str] = []
    store._conn.set_trace_callback(
        lambda sql: selects.append(sql) if sql.lstrip().startswith("SELECT") else None
    )
    store.save(notification, dedupe_key(notification), _intents(notification))
    store._conn.set_trace_callback(None)

    scans = []
    with sqlite3.connect(tmp_path / "webhook.db") as conn:
        for sql in selects:
            for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"):
                detail = row[-1]
                if detail.startswith("SCAN") and "sqlite_sequence" not in detail:
                    scans.append((sql, detail))
    # Reading the newest row by its id walks the table's tree from the end.
    scans = [(sql, d) for sql, d in scans if "ORDER BY id DESC LIMIT 1" not in sql]
    assert selects
    assert scans == []


def _steps(store: Store, read: Callable[[], object]) -> int:
    """How many SQLite VM steps (in thousands) one read takes."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store._conn.set_progress_handler(count, 1000)
    read()
    store._conn.set_progress_handler(None, 1000)
    return steps


def _jobs_of_one_action(store: Store, firing: dict[str, Any]) -> Jobs:
    notification = parse_notification(firing)
    store.save(notification, dedupe_key(notification), _intents(notification))
    return Jobs(store)


def _copy_action(store: Store, rows: list[tuple[str, str, float]]) -> None:
    """Copies of the first action, applied: (fingerprint, target, start) each."""
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO actions (notification_id, alert_fingerprint,"
            " alert_starts_at, labels, kind, policy, action, mode, target,"
            " result, received_unix, started_unix, created_at, updated_at)"
            " SELECT notification_id, ?, alert_starts_at, labels, kind, policy,"
            " action, mode, ?, 'applied', 0, ?, created_at, updated_at"
            " FROM actions LIMIT 1",
            rows,
        )


def test_the_workers_limits_cost_the_same_with_a_long_history(
    store: Store, firing: dict[str, Any]
) -> None:
    # The cap and the blast radius are read before every action: were they
    # to read every applied action ever recorded, each action would cost
    # more than the one before.
    jobs = _jobs_of_one_action(store, firing)
    since = time.time() - 60

    def limits() -> None:
        jobs.in_force()
        jobs.targets_reach(since, 100)

    def add_history(first: int, count: int) -> None:
        # Applied long ago, not reversible: neither in force nor in the window.
        rows = [(f"old-{i}", f"pid {i}", 1.0) for i in range(first, first + count)]
        _copy_action(store, rows)

    add_history(0, 100)
    short = _steps(store, limits)
    add_history(100, 20_000)
    long = _steps(store, limits)

    assert long <= short + 1


def test_the_blast_radius_reads_each_start_only_when_the_cap_may_be_reached(
    store: Store, firing: dict[str, Any]
) -> None:
    jobs = _jobs_of_one_action(store, firing)
    now = time.time()

    def start(targets: list[str]) -> None:
        first = store.query("SELECT count(*) FROM actions")[0][0]
        _copy_action(
            store, [(f"fp-{first + i}", t, now) for i, t in enumerate(targets)]
        )

    # Three starts on two targets: two targets reach a cap of 2, not of 3.
    start(["pid 1", "pid 2", "pid 1"])
    assert jobs.targets_reach(now - 1, 2)
    assert not jobs.targets_reach(now - 1, 3)
    assert not jobs.targets_reach(now + 1, 1)  # nothing started since

    # A cap set far above what a window holds (to be out of the way): the
    # check reads the start-time index alone, not each action's row.
    start([f"pid {i}" for i in range(20_000)])
    index_only = _steps(store, lambda: jobs.targets_reach(now - 1, 100_000))
    rows = _steps(store, lambda: jobs._count_targets_since(now - 1, 100_000))
    assert index_only * 2 < rows
    assert jobs.targets_reach(now - 1, 20_000)


def test_verify_beside_a_receiver_committing_meanwhile_finds_no_tampering(
    tmp_path: Path,
    store: Store,
    firing: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The receiver (`store`) commits a notification after verify has read the
    # audit records and before it reads the other tables and the head.
    def save(group_key: str) -> None:
        firing["groupKey"] = group_key
        notification = parse_notification(firing)
        store.save(notification, dedupe_key(notification), _intents(notification))

    save("first")
    compare = audit._compare_tables

    def commit_then_compare(*args: Any) -> str | None:
        save("meanwhile")
        return compare(*args)

    monkeypatch.setattr(audit, "_compare_tables", commit_then_compare)
    reader = Store.open_existing(str(tmp_path / "webhook.db"), readonly=True)
    try:
        verdict = reader.verify()
    finally:
        reader.close()

    assert verdict.problem is None


@pytest.mark.parametrize(
    ("offset", "same_hash", "opens"),
    [(-1, True, True), (0, True, True), (1, True, False), (0, False, False)],
    ids=["behind", "level", "ahead", "another-chain"],
)
def test_a_database_behind_its_head_file_is_refused_at_open(
    tmp_path: Path, firing: dict[str, Any], offset: int, same_hash: bool, opens: bool
) -> None:
    # Were it opened, its first commit would write the head anew and erase
    # the evidence of a rollback or a cut tail.
    path = str(tmp_path / "webhook.db")
    writer = Store.open(path)
    notification = parse_notification(firing)
    writer.save(notification, dedupe_key(notification), _intents(notification))
    [(records, last_hash)] = writer.query(
        "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1"
    )
    [(earlier_hash,)] = writer.query(
        "SELECT hash FROM audit WHERE id = ?", [records - 1]
    )
    writer.close()
    head = HeadFile(path)
    vouched = earlier_hash if offset < 0 else last_hash
    head.write(Head(records + offset, vouched if same_hash else "f" * 64))
    head.close()

    if opens:
        Store.open(path).close()
    else:
        with pytest.raises(StoreError, match="rolled back to an older copy"):
            Store.open(path)


def test_a_new_database_has_small_pages_and_an_older_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    fresh = tmp_path / "fresh.db"
    Store.open(str(fresh)).close()

    older = tmp_path / "older.db"
    with sqlite3.connect(older) as conn:
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE earlier (x)")
    store = Store.open(str(older))
    store.close()

    def page_size(path: Path) -> int:
        with sqlite3.connect(path) as conn:
            return conn.execute("PRAGMA page_size").fetchone()[0]

    assert page_size(fresh) == PAGE_BYTES == 1024
    assert page_size(older) == 4096


def _save_while_checkpointing(
    path: Path,
    firing: dict[str, Any],
    backstop: int,
    pause: float,
    checkpointed: Callable[[], None] = lambda: None,
) -> int:
    """Save 1,500 notifications while another connection checkpoints.

    Returns the WAL's size at the end, before the last connection closes.
    """
    store = Store.open(
        str(path), autocheckpoint=False, sync="NORMAL", wal_backstop_bytes=backstop
    )
    worker = Store.open_existing(str(path))
    stop = threading.Event()

    def checkpoints() -> None:
        while not stop.wait(0.3):
            worker.checkpoint()
            checkpointed()

    checkpointer = threading.Thread(target=checkpoints)
    checkpointer.start()
    try:
        for seq in range(1500):
            firing["groupKey"] = f"group-{seq}"
            notification = parse_notification(firing)
            store.save(notification, dedupe_key(notification), _intents(notification))
            if pause:
                time.sleep(pause)
    finally:
        stop.set()
        checkpointer.join()
    grown = Path(f"{path}-wal").stat().st_size
    worker.close()
    store.close()
    return grown


def test_checkpoints_start_the_wal_again_between_commits_without_a_backstop(
    tmp_path: Path, firing: dict[str, Any]
) -> None:
    # As at a steady load: a commit every millisecond or two. A checkpoint
    # pass overlaps commits, so one pass alone never finds the WAL all copied.
    path = tmp_path / "webhook.db"
    salts: set[bytes] = set()

    def checkpointed() -> None:
        # The WAL header's salts change each time it starts again.
        with open(f"{path}-wal", "rb") as wal:
            salts.add(wal.read(32)[16:24])

    _save_while_checkpointing(path, firing, 0, 0.001, checkpointed)

    # Some eight checkpoints: one pass each never started it again; a pass
    # until nothing came in starts it again at most of them.
    assert len(salts) >= 3


@pytest.mark.parametrize("backstop", [256 * 1024, 0])
def test_the_wal_stays_bounded_while_writes_never_pause(
    tmp_path: Path, firing: dict[str, Any], backstop: int
) -> None:
    # The worker's checkpoints (another connection) run while the receiver
    # writes on: none catches up with the last commit, and without the
    # backstop the WAL never starts again from its beginning.
    grown = _save_while_checkpointing(tmp_path / "webhook.db", firing, backstop, 0)

    if backstop:
        assert grown < 4 * backstop
    else:  # what the backstop is for: this test must see the WAL run away
        assert grown > 16 * 256 * 1024
