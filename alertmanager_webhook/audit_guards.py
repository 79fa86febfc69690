"""The triggers that keep the audit table append-only: checked, and put back.

Without them the chain still shows an edit, but nothing stops the next one;
a trigger added on the table may drop or change new records before they are
written. `aiops audit verify` reports each finding; a receiver that starts on
a database whose guards were dropped or rewritten puts its own back and
records what it found in the chain (Store.open), so the repair leaves a
trace rather than erasing one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One trigger on the audit table that is not as the receiver made it."""

    trigger: str
    change: str  # dropped, replaced or added
    text: str

    @property
    def restorable(self) -> bool:
        return self.change != "added"


def schema_objects(conn: sqlite3.Connection, kind: str, table: str) -> dict[str, str]:
    """The schema's objects of `kind` on `table`, by name, with their SQL."""
    # Without regard to case, as SQLite names tables: ON "AUDIT" is on audit.
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = ?"
        " AND tbl_name = ? COLLATE NOCASE",
        (kind, table),
    )
    return {name: sql for name, sql in rows}


def expected_guards(schema: str) -> dict[str, str]:
    """The triggers `schema` makes on the audit table, as SQLite stores them."""
    # Stored as written, less IF NOT EXISTS: compared through a scratch copy.
    scratch = sqlite3.connect(":memory:")
    try:
        scratch.executescript(schema)
        return schema_objects(scratch, "trigger", "audit")
    finally:
        scratch.close()


def findings(conn: sqlite3.Connection, schema: str) -> list[Finding]:
    """What happened to the guards: each dropped, rewritten or added trigger."""
    guards = expected_guards(schema)
    found = schema_objects(conn, "trigger", "audit")
    said = []
    for name, sql in guards.items():
        if name not in found:
            text = f"trigger {name} dropped: the audit log is no longer append-only"
            said.append(Finding(name, "dropped", text))
        elif _words(found[name]) != _words(sql):
            text = (
                f"trigger {name} replaced: it no longer reads as the receiver wrote it"
            )
            said.append(Finding(name, "replaced", text))
    for name in sorted(set(found) - set(guards)):
        text = (
            f"trigger {name} added on the audit table: it may drop or change "
            "records as they are written"
        )
        said.append(Finding(name, "added", text))
    return said


def restore(conn: sqlite3.Connection, schema: str) -> None:
    """Put back each guard that was dropped or rewritten; call in a transaction.

    A trigger someone added is left: it is theirs to explain, and verify goes
    on naming it.
    """
    found = schema_objects(conn, "trigger", "audit")
    for name, sql in expected_guards(schema).items():
        if name in found and _words(found[name]) == _words(sql):
            continue
        conn.execute(f'DROP TRIGGER IF EXISTS "{name}"')
        conn.execute(sql)


def _words(sql: str) -> str:
    return " ".join(sql.split())
