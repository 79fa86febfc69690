"""The receiver database's errors, and how SQLite's own errors map onto them.

Callers catch StoreError to answer "try again" and its subclasses to say why.
"""

from __future__ import annotations

import sqlite3


class StoreError(Exception):
    """The database could not be read or written; the request may be retried."""


class DatabaseDamaged(StoreError):
    """The file is not a sound SQLite database: truncated, overwritten, corrupt."""


class DatabaseMissing(StoreError):
    """No receiver database where one was expected: no file, or an empty one."""


class DatabaseInUse(StoreError):
    """Another receiver holds the database file."""


def from_sqlite(message: str, exc: sqlite3.Error) -> StoreError:
    """The StoreError, or DatabaseDamaged, to raise from `exc`."""
    # OperationalError (locked, disk full) passes; any other DatabaseError
    # means the file itself is bad.
    damaged = isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.OperationalError
    )
    return (DatabaseDamaged if damaged else StoreError)(f"{message}: {exc}")
