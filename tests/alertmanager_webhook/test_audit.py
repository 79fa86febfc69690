"""The audit chain: append-only, and `aiops audit verify` names what was changed."""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alertmanager_webhook import cli
from alertmanager_webhook.audit_head import Head, HeadFile
from alertmanager_webhook.store import Store

from .conftest import Receiver


@pytest.fixture
def db(receiver: Receiver, firing: dict[str, Any], resolved, tmp_path: Path) -> Path:
    receiver.post(firing)
    receiver.worker.drain()
    receiver.post(resolved)
    receiver.worker.drain()
    return tmp_path / "webhook.db"


def _verify(db: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="aiops")
    cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    status = cli.run(parser.parse_args(["audit", "verify", "--database", str(db)]))
    out = capsys.readouterr()
    return status, out.out + out.err


def _tamper(db: Path, *sql: str) -> None:
    # What someone with the file would do: drop the guards, then edit.
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("DROP TRIGGER audit_no_delete")
        for statement in sql:
            conn.execute(statement)


def test_intact_log_verifies(db: Path, capsys) -> None:
    status, out = _verify(db, capsys)

    assert status == 0
    assert out.startswith("audit log intact: 7 records, head ")


def test_records_cannot_be_updated_or_deleted(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit SET detail = '{}' WHERE id = 2")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit WHERE id = 2")


def test_each_record_carries_the_previous_hash(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT prev_hash, hash FROM audit ORDER BY id").fetchall()

    assert rows[0][0] == "0" * 64
    assert all(rows[i][0] == rows[i - 1][1] for i in range(1, len(rows)))


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        (
            ["UPDATE audit SET detail = replace(detail, 'planned', 'skipped')"],
            "record 4 edited: hash mismatch",
        ),
        (["DELETE FROM audit WHERE id = 3"], "record 3 removed: the chain jumps"),
        (
            ["DELETE FROM audit WHERE id >= 6"],
            "record 6 removed: records 6 to 7 are gone from the end",
        ),
        (
            ["DELETE FROM audit WHERE id = 7"],
            "record 7 removed: record 7 is gone from the end",
        ),
        (
            ["UPDATE actions SET result = 'applied' WHERE id = 1"],
            "action 1 edited: differs from audit record 4",
        ),
        (["DELETE FROM actions WHERE id = 3"], "action 3 removed (audit record 7)"),
        (
            ['UPDATE alerts SET labels = \'{"user": "x"}\' WHERE id = 1'],
            "notification 1 edited: differs from audit record 1",
        ),
        (
            ["DELETE FROM audit", "DELETE FROM sqlite_sequence"],
            "action 1 has no audit record",
        ),
    ],
)
def test_verify_names_the_first_change(
    db: Path, capsys, sql: list[str], problem: str
) -> None:
    _tamper(db, *sql)

    status, out = _verify(db, capsys)

    assert status == 1
    assert out.startswith(f"audit log broken: {problem}")


def test_a_dropped_audit_table_is_reported_broken(db: Path, capsys) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE audit")

    status, out = _verify(db, capsys)

    assert status == 1
    assert out.startswith("audit log broken: the audit table is gone: dropped")


@pytest.mark.parametrize("trigger", ["audit_no_update", "audit_no_delete"])
def test_a_dropped_guard_trigger_is_reported_broken(
    db: Path, capsys, trigger: str
) -> None:
    # The records are untouched: without the trigger they no longer have to be.
    with sqlite3.connect(db) as conn:
        conn.execute(f"DROP TRIGGER {trigger}")

    status, out = _verify(db, capsys)

    assert status == 1
    assert out.startswith(
        f"audit log broken: trigger {trigger} dropped: the audit log is no longer "
        "append-only"
    )


def test_a_guard_trigger_made_harmless_is_reported_broken(db: Path, capsys) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER audit_no_delete")
        conn.execute(
            "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT 1; END"
        )

    status, out = _verify(db, capsys)

    assert status == 1
    assert out.startswith("audit log broken: trigger audit_no_delete replaced: ")


def test_rewritten_record_with_a_fresh_hash_breaks_the_next_link(
    db: Path, capsys
) -> None:
    from alertmanager_webhook.audit import record_hash

    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT * FROM audit WHERE id = 2").fetchone()
    detail = row[4].replace("queued", "skipped")
    forged = record_hash(row[0], row[1], row[2], row[3], detail, row[5])
    _tamper(
        db,
        f"UPDATE audit SET detail = '{detail}', hash = '{forged}' WHERE id = 2",
    )

    status, out = _verify(db, capsys)

    assert status == 1
    assert "record 2 replaced: record 3 does not follow it" in out


def test_verify_of_a_missing_file_exits_2(tmp_path: Path, capsys) -> None:
    status, out = _verify(tmp_path / "absent.db", capsys)

    assert status == 2
    assert "no database at" in out


def test_cli_approves_and_lists(
    make_receiver: Callable[..., Receiver], firing, tmp_path: Path, capsys
) -> None:
    from .conftest import make_config

    receiver = make_receiver(make_config(mode="approve"))
    receiver.post(firing)
    receiver.worker.drain()
    parser = argparse.ArgumentParser(prog="aiops")
    cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    db = str(tmp_path / "webhook.db")

    listed = cli.run(parser.parse_args(["approve", "--list", "--database", db]))
    listing = capsys.readouterr().out
    approved = cli.run(parser.parse_args(["approve", "1", "--database", db]))
    twice = cli.run(parser.parse_args(["approve", "1", "--database", db]))
    out = capsys.readouterr()

    assert listed == 0
    assert listing.startswith(
        "id\tpolicy\taction\tplan\n1\tcap-testcap\tcpu_cap\tcap 2 processes"
    )
    assert (approved, twice) == (0, 1)
    assert "action 1 approved" in out.out
    assert "action 1 is approved, not pending approval" in out.err
    assert receiver.actions()[0]["approved_by"].startswith("cli:")
    assert _verify(tmp_path / "webhook.db", capsys)[0] == 0


def _head(db: Path) -> Path:
    return db.with_name(db.name + ".audit-head")


def _snapshot(db: Path, to: Path) -> None:
    # SQLite's backup API: a consistent copy of a database in WAL mode.
    with sqlite3.connect(db) as source, sqlite3.connect(to) as copy:
        source.backup(copy)


def test_head_file_follows_each_commit(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        last = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC").fetchone()

    head = json.loads(_head(db).read_text())

    assert (head["records"], head["hash"]) == tuple(last)


def test_tail_cut_with_its_sequence_row_is_caught(db: Path, capsys) -> None:
    # The rows the cut records vouched for are still there; the rollback test
    # below takes them back too.
    _tamper(
        db,
        "DELETE FROM audit WHERE id >= 6",
        "UPDATE sqlite_sequence SET seq = 5 WHERE name = 'audit'",
    )

    status, out = _verify(db, capsys)

    assert status == 1
    assert out.startswith("audit log broken: action 3 has no audit record")


def test_database_rolled_back_to_an_older_copy_is_caught_by_the_head(
    receiver: Receiver, firing, resolved, tmp_path: Path, capsys
) -> None:
    # The sharpest cut: every table and the sequence row agree with the
    # shorter chain, because they are the database as it was earlier.
    db = tmp_path / "webhook.db"
    receiver.post(firing)
    receiver.worker.drain()
    _snapshot(db, tmp_path / "older.db")
    receiver.post(resolved)
    receiver.worker.drain()
    _snapshot(tmp_path / "older.db", db)

    status, out = _verify(db, capsys)

    assert status == 1
    assert out.startswith(
        "audit log broken: records 5 to 7 removed from the end: the head file "
        "says the log held 7"
    )


def test_head_of_another_chain_is_a_mismatch(db: Path, capsys) -> None:
    head = json.loads(_head(db).read_text())
    _head(db).write_text(json.dumps({"records": head["records"], "hash": "f" * 64}))

    status, out = _verify(db, capsys)

    assert status == 1
    assert out.startswith("audit log broken: head mismatch: record 7 hashes to ")


def test_head_behind_the_chain_is_a_kill_between_commit_and_head(
    db: Path, capsys
) -> None:
    with sqlite3.connect(db) as conn:
        fifth = conn.execute("SELECT hash FROM audit WHERE id = 5").fetchone()[0]
    _head(db).write_text(json.dumps({"records": 5, "hash": fifth}))

    status, out = _verify(db, capsys)

    assert (status, out.split(",")[0]) == (0, "audit log intact: 7 records")
    assert "note: the head file is 2 record(s) behind the chain (it says 5)" in out


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda head: head.unlink(), "is missing: a cut tail cannot be ruled out"),
        (
            lambda head: head.write_bytes(head.read_bytes()[:20]),
            "is damaged or truncated",
        ),
    ],
    ids=["removed", "truncated"],
)
def test_head_file_removed_or_truncated(
    db: Path, capsys, damage: Callable[[Path], None], problem: str
) -> None:
    damage(_head(db))

    status, out = _verify(db, capsys)

    assert status == 1
    assert out.startswith("audit log broken: head file ")
    assert problem in out


def test_truncated_database_file_is_reported_broken(
    receiver: Receiver, db: Path, capsys
) -> None:
    # Closed first, so that every record is in the main file, not the WAL.
    receiver.store.close()
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])

    status, out = _verify(db, capsys)

    assert status == 1
    assert out.startswith("audit log broken: ")
    assert "malformed" in out or "not a database" in out


def test_an_emptied_database_file_is_named_as_such(
    receiver: Receiver, db: Path, capsys
) -> None:
    # Without its head file nothing says a chain was there: a usage error.
    receiver.store.close()
    _head(db).unlink()
    db.write_bytes(b"")

    status, out = _verify(db, capsys)

    assert status == 2
    assert "holds no receiver schema: empty, truncated" in out


@pytest.mark.parametrize("damage", ["emptied", "removed"])
def test_a_database_gone_beside_its_head_is_reported_broken(
    receiver: Receiver, db: Path, capsys, damage: str
) -> None:
    receiver.store.close()
    assert _head(db).exists()
    if damage == "emptied":
        db.write_bytes(b"")
    else:
        db.unlink()

    status, out = _verify(db, capsys)

    assert status == 1
    assert out.startswith("audit log broken: ")
    assert "its audit head file says it held records" in out


def test_receiver_remakes_a_removed_head_and_says_so_in_the_chain(
    receiver: Receiver, db: Path, capsys
) -> None:
    receiver.store.close()
    _head(db).unlink()

    Store.open(str(db)).close()
    status, out = _verify(db, capsys)

    assert status == 0
    assert "note: the head file was made anew at record 8" in out
    assert "audit log intact: 8 records" in out


def test_a_symlinked_database_shares_its_head_file(tmp_path: Path) -> None:
    database = tmp_path / "webhook.db"
    database.touch()
    link = tmp_path / "link.db"
    link.symlink_to(database)

    assert HeadFile(str(link)).path == HeadFile(str(database)).path
    assert HeadFile(str(link)).path.name == "webhook.db.audit-head"


def test_verify_reads_a_copy_in_a_read_only_folder_and_leaves_nothing(
    receiver: Receiver,
    firing: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver.post(firing)
    receiver.store.close()
    copy = tmp_path / "copy"
    copy.mkdir()
    for source in tmp_path.glob("webhook.db*"):
        (copy / source.name).write_bytes(source.read_bytes())
    before = sorted(p.name for p in copy.iterdir())
    copy.chmod(0o555)
    try:
        status, out = _verify(copy / "webhook.db", capsys)
    finally:
        copy.chmod(0o755)

    assert (status, out[:18]) == (0, "audit log intact: "), out
    assert sorted(p.name for p in copy.iterdir()) == before


def test_a_head_file_removed_under_the_receiver_is_made_anew(tmp_path: Path) -> None:
    database = tmp_path / "webhook.db"
    database.touch()
    head = HeadFile(str(database))
    head.write(Head(3, "a" * 64))

    head.path.unlink()
    head.write(Head(4, "b" * 64))
    head.close()

    assert head.read() == Head(4, "b" * 64)


def test_approve_refuses_an_id_no_action_can_have(capsys) -> None:
    parser = argparse.ArgumentParser(prog="aiops")
    cli.add_subcommands(parser.add_subparsers(dest="command", required=True))

    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["approve", "99999999999999999999999"])

    assert exited.value.code == 2
    assert "no action has id 99999999999999999999999" in capsys.readouterr().err


def test_a_trigger_added_to_drop_records_is_named_with_what_went_missing(
    receiver: Receiver, db: Path, firing: dict[str, Any], capsys
) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TRIGGER quiet BEFORE INSERT ON audit"
            " BEGIN SELECT RAISE(IGNORE); END"
        )
    firing["groupKey"] = "another group"
    receiver.post(firing)  # stored; its audit records are dropped

    status, out = _verify(db, capsys)

    assert status == 1
    assert "trigger quiet added on the audit table" in out
    assert out.index("notification") < out.index("trigger quiet")


@pytest.mark.parametrize("damage", ["dropped", "replaced"])
def test_a_receiver_puts_its_guards_back_and_the_chain_says_so(
    db: Path, capsys, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER audit_no_delete")
        if damage == "replaced":
            conn.execute(
                "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
                " BEGIN SELECT 1; END"
            )

    with caplog.at_level("WARNING", logger="alertmanager_webhook.store"):
        Store.open(str(db)).close()  # the receiver starts again

    assert f"trigger audit_no_delete {damage}" in caplog.text
    with sqlite3.connect(db) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit WHERE id = 2")
    status, out = _verify(db, capsys)
    assert status == 0
    assert "put back the audit log's triggers at record 8" in out
    assert f"trigger audit_no_delete {damage}" in out


def test_a_trigger_on_the_audit_table_is_seen_whatever_case_names_it(
    db: Path, capsys
) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            'CREATE TRIGGER sneaky AFTER INSERT ON "Audit" BEGIN SELECT 1; END'
        )

    status, out = _verify(db, capsys)

    assert status == 1
    assert "trigger sneaky added on the audit table" in out
