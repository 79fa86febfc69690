"""Opens the receiver's SQLite file: its lock, its pragmas, its schema version.

Needs a local filesystem, where flock and SQLite's fcntl locks keep apart.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from alertmanager_webhook import audit, audit_guards
from alertmanager_webhook.report.storage import SCHEMA as REPORT_SCHEMA
from alertmanager_webhook.schema import SCHEMA, SCHEMA_VERSION
from alertmanager_webhook.store_errors import (
    DatabaseInUse,
    DatabaseMissing,
    StoreError,
    from_sqlite,
)

PAGE_BYTES = 1024
# How long the WAL may grow when its checkpoints are left to another connection.
WAL_BACKSTOP_BYTES = 64 * 1024 * 1024


def hold_database(path: str) -> int:
    """Hold an flock on the database file for the receiver's life; its descriptor.

    On the file itself, not on its name, and before SQLite opens it: SQLite
    gives a hard link a WAL of its own, so a second receiver that opened one
    even briefly would corrupt the file. SQLite locks with fcntl, which flock
    does not touch on a local filesystem. Close the descriptor only after the
    store: closing one drops the process's fcntl locks on the file too.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open database {path!r}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DatabaseInUse(
            f"another receiver has database {path!r} open; each receiver needs "
            "a database of its own"
        ) from None
    return fd


def open_or_create(
    path: str, autocheckpoint: bool, sync: str, wal_backstop_bytes: int
) -> tuple[sqlite3.Connection, list[audit_guards.Finding]]:
    """Connect to the database at `path`, making it and its schema if need be.

    Returns the connection and what was wrong with the audit table's guards
    before the schema put them back; Store.open says what the arguments do.
    """
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 5000")
        # Only a new database takes it. Each notification changes a page of
        # some ten tables and indexes, each written whole to the WAL at
        # commit: 1 KiB pages took a sixth off a notification's CPU.
        conn.execute(f"PRAGMA page_size = {PAGE_BYTES}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL syncs the WAL on every commit: a 2xx survives a power cut too.
        conn.execute(f"PRAGMA synchronous = {'NORMAL' if sync == 'NORMAL' else 'FULL'}")
        conn.execute("PRAGMA foreign_keys = ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            conn.close()
            raise StoreError(
                f"database {path!r} has schema {version}, this receiver "
                f"writes {SCHEMA_VERSION}; move the old file aside"
            )
        # Read before the schema below makes a dropped trigger anew.
        guards = (
            audit_guards.findings(conn, audit.SCHEMA)
            if audit_guards.schema_objects(conn, "table", "audit")
            else []
        )
        # The reports table is CREATE IF NOT EXISTS too: an older database
        # of the same version gains it on open.
        conn.executescript(SCHEMA + audit.SCHEMA + REPORT_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if not autocheckpoint:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = wal_backstop_bytes // page  # 0: no backstop
            conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
    except sqlite3.Error as exc:
        raise from_sqlite(f"cannot open database {path!r}", exc) from exc
    return conn, guards


def open_existing(path: str, readonly: bool) -> sqlite3.Connection:
    """Connect to a database the receiver wrote, without creating one."""
    if not Path(path).is_file():
        raise DatabaseMissing(f"no database at {path!r}")
    mode = "ro" if readonly else "rw"
    if readonly and not Path(path + "-wal").exists():
        # Nobody has it open (a WAL database in use keeps its -wal file):
        # read the file as it is, creating no -wal or -shm beside it,
        # which also works in a read-only folder.
        mode += "&immutable=1"
    try:
        conn = sqlite3.connect(
            f"file:{quote(path)}?mode={mode}",
            uri=True,
            check_same_thread=False,
            isolation_level=None,
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        if readonly and "readonly" in str(exc):
            raise StoreError(
                f"cannot read database {path!r}: its folder is read-only and "
                "a -wal file lies beside it; copy both to a writable folder"
            ) from exc
        raise from_sqlite(f"cannot open database {path!r}", exc) from exc
    if version == 0:
        # A receiver's database always carries its schema version; none
        # means an empty, truncated or foreign file.
        conn.close()
        raise DatabaseMissing(
            f"database {path!r} holds no receiver schema: empty, truncated "
            "or not the receiver's"
        )
    if version != SCHEMA_VERSION:
        conn.close()
        raise StoreError(
            f"database {path!r} has schema {version}, not {SCHEMA_VERSION}"
        )
    return conn
