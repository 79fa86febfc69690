"""The hash-chained audit log: append inside the caller's transaction, verify.

Each record carries the hash of the one before it, so an edited record breaks
its own hash and a removed one breaks the chain; records cut from the end show
against the head file (audit_head.py). Triggers refuse UPDATE and DELETE, and
verify checks that they are still there; it also compares the mutable tables
with their last audit record.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from alertmanager_webhook import audit_guards
from alertmanager_webhook.audit_head import Head

GENESIS = "0" * 64
# The subject of the record written when a head file had to be made anew.
REANCHOR = "audit:head"
# The subject of the record written when the receiver put back its triggers.
REGUARD = "audit:guards"

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_subject ON audit (subject);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

# The action fields an audit record vouches for; verify compares them with the row.
ACTION_FIELDS = (
    "id",
    "kind",
    "policy",
    "action",
    "mode",
    "target",
    "plan",
    "result",
    "reason",
    "approved_by",
    "restores",
    "restored_at",
    "undo",
)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def record_hash(
    record_id: int, at: str, kind: str, subject: str, detail: str, prev: str
) -> str:
    # A JSON array keeps the fields apart: no value can imitate a separator.
    material = canonical([record_id, at, kind, subject, detail, prev])
    return hashlib.sha256(material.encode()).hexdigest()


def append(
    conn: sqlite3.Connection, at: str, kind: str, subject: str, detail: Mapping
) -> None:
    """Add one record; call inside a write transaction (BEGIN IMMEDIATE)."""
    last = conn.execute(
        "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1"
    ).fetchone()
    seq = conn.execute(
        "SELECT seq FROM sqlite_sequence WHERE name = 'audit'"
    ).fetchone()
    record_id = max(last[0] if last else 0, seq[0] if seq else 0) + 1
    prev = last[1] if last else GENESIS

    text = canonical(dict(detail))
    digest = record_hash(record_id, at, kind, subject, text, prev)
    conn.execute(
        "INSERT INTO audit (id, at, kind, subject, detail, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (record_id, at, kind, subject, text, prev, digest),
    )


def last(conn: sqlite3.Connection) -> Head | None:
    """The chain's head as the table holds it; None while it is empty."""
    row = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else Head(row[0], row[1])


def append_action(conn: sqlite3.Connection, at: str, action_id: int) -> None:
    """Record an action's current state; call inside its write transaction."""
    row = conn.execute("SELECT * FROM actions WHERE id = ?", (action_id,)).fetchone()
    append(conn, at, "action", f"action:{action_id}", action_state(row))


def action_state(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in ACTION_FIELDS}


@dataclass(frozen=True)
class Verdict:
    """What verify found: the record count, the chain head, the first problem.

    `notes` are facts a reader should weigh that are not tampering by
    themselves, such as a head file made anew.
    """

    records: int
    head: str
    problem: str | None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(
    conn: sqlite3.Connection, notification_digest: Callable[[int], Any]
) -> Verdict:
    """Check the chain, its tail, and that the tables match their last record.

    `notification_digest(id)` recomputes what a notification record vouches
    for from the notification and alert rows.
    """
    if not audit_guards.schema_objects(conn, "table", "audit"):
        # Dropping the table takes the records and their triggers with it.
        return Verdict(0, GENESIS, "the audit table is gone: dropped, records and all")

    rows = conn.execute(
        "SELECT id, at, kind, subject, detail, prev_hash, hash FROM audit ORDER BY id"
    ).fetchall()
    prev_id, prev_hash = 0, GENESIS
    latest: dict[str, tuple[int, dict[str, Any]]] = {}
    notes = []
    for record_id, at, kind, subject, detail, prev, digest in rows:
        if record_id != prev_id + 1:
            return Verdict(
                len(rows),
                prev_hash,
                f"record {prev_id + 1} removed: the chain jumps from record "
                f"{prev_id} to {record_id}",
            )
        if record_hash(record_id, at, kind, subject, detail, prev) != digest:
            return Verdict(
                len(rows), prev_hash, f"record {record_id} edited: hash mismatch"
            )
        if prev != prev_hash:
            return Verdict(
                len(rows),
                prev_hash,
                f"record {prev_id} replaced: record {record_id} does not follow it",
            )
        latest[subject] = (record_id, json.loads(detail))
        if subject == REGUARD:
            found = "; ".join(json.loads(detail)["found"])
            notes.append(
                f"the receiver put back the audit log's triggers at record "
                f"{record_id} ({at}), having found: {found}; records written "
                "before then were not kept from edits, but the chain shows any"
            )
        if subject == REANCHOR:
            notes.append(
                f"the head file was made anew at record {record_id} ({at}): a tail "
                "cut before then cannot be ruled out"
            )
        prev_id, prev_hash = record_id, digest

    # A cut tail shows here only if SQLite's sequence row was left alone;
    # check_head() catches the rest against the head file.
    seq = conn.execute(
        "SELECT seq FROM sqlite_sequence WHERE name = 'audit'"
    ).fetchone()
    if seq and seq[0] > prev_id:
        return Verdict(
            len(rows),
            prev_hash,
            f"record {prev_id + 1} removed: {_records(prev_id + 1, seq[0])} "
            f"{'is' if seq[0] == prev_id + 1 else 'are'} gone from the end",
        )

    # The guards after the records: an edit made once a guard was gone is
    # the sharper finding, and a trigger added to drop records explains why
    # they are missing.
    problems = [_compare_tables(conn, latest, notification_digest)]
    problems += [f.text for f in audit_guards.findings(conn, SCHEMA)]
    problem = "; ".join(p for p in problems if p) or None
    return Verdict(len(rows), prev_hash, problem, tuple(notes))


def _records(first: int, last: int) -> str:
    """'record 29', or 'records 29 to 31'."""
    return f"record {first}" if first == last else f"records {first} to {last}"


def check_head(conn: sqlite3.Connection, verdict: Verdict, head: Head) -> Verdict:
    """Compare an intact chain with the head file written beside it."""
    if head.records > verdict.records:
        return replace(
            verdict,
            problem=f"{_records(verdict.records + 1, head.records)} removed from "
            f"the end: the head file says the log held {head.records}",
        )

    row = conn.execute(
        "SELECT hash FROM audit WHERE id = ?", (head.records,)
    ).fetchone()
    found = row[0] if row else GENESIS
    if found != head.hash:
        return replace(
            verdict,
            problem=f"head mismatch: record {head.records} hashes to {found[:16]}, "
            f"the head file says {head.hash[:16]}",
        )
    # A head behind the chain is a receiver killed between its commit and the
    # head's update, one that could not write the file, or one that committed
    # while verify read; the records after
    # it are checked by the chain alone, which a cut there would not show.
    if head.records < verdict.records:
        return replace(
            verdict,
            notes=(
                *verdict.notes,
                f"the head file is {verdict.records - head.records} record(s) "
                f"behind the chain (it says {head.records}): records past it are "
                "vouched for by the chain alone; if the receiver is running, it "
                "may have committed meanwhile: run verify again, and see its log "
                "for 'cannot write audit head'",
            ),
        )
    return verdict


def _compare_tables(
    conn: sqlite3.Connection,
    latest: Mapping[str, tuple[int, dict[str, Any]]],
    notification_digest: Callable[[int], Any],
) -> str | None:
    conn.row_factory = sqlite3.Row
    actions = {
        row["id"]: action_state(row) for row in conn.execute("SELECT * FROM actions")
    }
    notifications = [r[0] for r in conn.execute("SELECT id FROM notifications")]

    for subject, (record_id, detail) in sorted(latest.items(), key=lambda s: s[1][0]):
        kind, _, ident = subject.partition(":")
        if kind == "action":
            row = actions.pop(int(ident), None)
            if row is None:
                return f"action {ident} removed (audit record {record_id})"
            if row != detail:
                return f"action {ident} edited: differs from audit record {record_id}"
        elif kind == "notification":
            if int(ident) not in notifications:
                return f"notification {ident} removed (audit record {record_id})"
            if notification_digest(int(ident)) != detail:
                return (
                    f"notification {ident} edited: differs from audit record "
                    f"{record_id}"
                )
    if actions:
        return f"action {min(actions)} has no audit record"
    unaudited = set(notifications) - {
        int(s.partition(":")[2]) for s in latest if s.startswith("notification:")
    }
    if unaudited:
        return f"notification {min(unaudited)} has no audit record"
    return None
