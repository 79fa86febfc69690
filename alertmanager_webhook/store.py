"""The receiver's SQLite database: its shared connection and transactions.

WAL mode; a notification's transaction is committed (and, with sync FULL,
synced to disk) before the sender hears 2xx. How the file is locked and opened
is in database_file.py, what a notification writes in intake.py, the audit chain
in audit.py and its head file in audit_head.py, the queue's state changes in
jobs.py, the reads the API lists in listings.py, the errors raised in
store_errors.py.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from alertmanager_webhook import audit, audit_guards, database_file, intake
from alertmanager_webhook.audit_head import Head, HeadError, HeadFile
from alertmanager_webhook.commits import GroupCommit
from alertmanager_webhook.intake import Intent, Saved
from alertmanager_webhook.payload import Notification
from alertmanager_webhook.store_errors import StoreError, from_sqlite

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
T = TypeVar("T")
# The most passes of one checkpoint() that chase commits still coming in.
# SQLite's INTEGER holds 64 bits: no row has a larger id.
LARGEST_ID = 2**63 - 1
CHECKPOINT_PASSES = 5


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Store:
    """One SQLite connection in WAL mode, shared by the server's threads."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        clock: Clock = _utc_now,
        head: HeadFile | None = None,
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._head = head
        # Another delivery of the same notification won the race.
        self._group: GroupCommit[Any] = GroupCommit(
            self.transaction,
            lambda exc: "notifications.dedupe_key" in str(exc),
        )
        # The connection is shared across threads; sqlite3 needs the calls apart.
        # It is the process's one writer, so its writers queue here rather than
        # in SQLite's busy handler, which sleeps in whole milliseconds.
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: str,
        clock: Clock = _utc_now,
        autocheckpoint: bool = True,
        sync: str = "FULL",
        wal_backstop_bytes: int = database_file.WAL_BACKSTOP_BYTES,
    ) -> Store:
        """Open or create the database at `path` and make sure the schema exists.

        Without `autocheckpoint`, checkpoint() must be called meanwhile, from
        elsewhere: a commit copies the WAL into the database (the slow part of
        some commits) only once it has grown past `wal_backstop_bytes`. Under
        writes that never pause, a checkpoint() that does not catch up with the
        last commit leaves the WAL to grow (9 MB a second at 200 notifications
        a second, every page read slowing with its length) until the backstop
        checkpoints in a commit, a stall of some 10 ms for the requests behind.
        `sync` NORMAL skips the fsync of each commit: such a commit survives the
        process being killed, and a power cut only once a later FULL commit or
        a checkpoint has synced the WAL it shares.
        """
        conn, guards = database_file.open_or_create(
            path, autocheckpoint, sync, wal_backstop_bytes
        )

        store = cls(conn, clock, HeadFile(path, fsync=sync != "NORMAL"))
        try:
            store._anchor()
            store._restore_guards(guards)
        except StoreError:
            store.close()
            raise
        return store

    def _anchor(self) -> None:
        """Make the head file if it is missing, saying so in the chain itself.

        Refuses a database behind its head file: the first commit would write
        the head anew and erase the evidence that records were cut.
        """
        assert self._head is not None
        if self._head.exists():
            self._check_not_behind(self._head)
            return
        with self.transaction() as conn:
            top = audit.last(conn)
            if top is None:
                # A new database: the head says so until the first record.
                self._write_head(Head(0, audit.GENESIS))
                return
            # Either a database from before head files, or the file was
            # removed; verify shows this record as a note, not as intact.
            log.warning(
                "audit head file missing path=%s records=%d; making it anew",
                self._head.path,
                top.records,
            )
            audit.append(
                conn,
                self._clock().isoformat(),
                "audit",
                audit.REANCHOR,
                {"head_file": self._head.path.name, "records_before": top.records},
            )

    def _restore_guards(self, found: list[audit_guards.Finding]) -> None:
        """Put back dropped or rewritten audit triggers, saying so in the chain."""
        for finding in found:
            log.warning(
                "audit log guard: %s; run aiops audit verify to see whether "
                "records were changed meanwhile",
                finding.text,
            )
        restored = [f for f in found if f.restorable]
        if not restored:
            return
        with self.transaction() as conn:
            audit_guards.restore(conn, audit.SCHEMA)
            audit.append(
                conn,
                self._clock().isoformat(),
                "audit",
                audit.REGUARD,
                {"found": [f.text for f in restored]},
            )

    def _check_not_behind(self, head_file: HeadFile) -> None:
        try:
            head = head_file.read()
        except HeadError as exc:
            # A torn write (a power cut) among others; verify reports it.
            log.warning("audit head unreadable err=%s", exc)
            return
        row = self._conn.execute(
            "SELECT hash FROM audit WHERE id = ?", (head.records,)
        ).fetchone()
        if head.records == 0 or (row is not None and row[0] == head.hash):
            return
        raise StoreError(
            f"the audit head file {str(head_file.path)!r} vouches for record "
            f"{head.records}, which this database does not hold as it was: it was "
            "rolled back to an older copy or its records were cut; `aiops audit "
            "verify` says which. To run on it anyway, move the head file aside: "
            "the receiver then records a new head in the chain"
        )

    @classmethod
    def open_existing(cls, path: str, readonly: bool = False) -> Store:
        """Open a database the receiver wrote, without creating one."""
        conn = database_file.open_existing(path, readonly)
        return cls(conn, head=HeadFile(path))

    def verify(self) -> audit.Verdict:
        """Check the audit chain, the tables against it, and the head file."""
        with self._lock:
            # The head first, then every table in one snapshot: a receiver
            # committing meanwhile can leave the head behind the records read
            # (a note), never ahead of them, nor one table ahead of another.
            head: Head | HeadError | None = None
            if self._head is not None:
                try:
                    head = self._head.read()
                except HeadError as exc:
                    head = exc
            try:
                self._conn.execute("BEGIN")
                try:
                    verdict = audit.verify(self._conn, self.notification_digest)
                    if not verdict.ok or head is None:
                        return verdict
                    if isinstance(head, HeadError):
                        return dataclasses.replace(verdict, problem=str(head))
                    return audit.check_head(self._conn, verdict, head)
                finally:
                    self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise from_sqlite("cannot read database", exc) from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        if self._head is not None:
            self._head.close()

    def file(self) -> str:
        """The database's file as SQLite opened it; "" for one in memory."""
        return self.query("PRAGMA database_list")[0]["file"]

    def now(self) -> datetime:
        return self._clock()

    def checkpoint(self) -> None:
        """Copy the WAL into the database without blocking writers.

        A commit starts the WAL again from its beginning only if a checkpoint
        had copied all of it: under writes that never pause, the commits made
        during one pass (10 ms for a second's worth at 200 notifications a
        second) leave it behind. Each further pass copies only what came in
        during the last, so a few passes catch up; two passes that find the
        same WAL mean that nothing came in between, all is copied, and the
        next commit starts it again.
        """
        last = None
        for _ in range(CHECKPOINT_PASSES):
            found = tuple(self.query("PRAGMA wal_checkpoint(PASSIVE)")[0])
            if found == last:
                return
            last = found

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the database lock from its start."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    top = audit.last(self._conn) if self._head else None
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write database: {exc}") from exc
            # Still under the lock, so that heads are written in commit order.
            self._write_head(top)

    def _write_head(self, top: Head | None) -> None:
        if self._head is None or top is None:
            return
        try:
            self._head.write(top)
        except OSError as exc:
            # The commit stands; verify checks records past a stale head by
            # the chain alone.
            log.warning("cannot write audit head path=%s err=%s", self._head.path, exc)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read database: {exc}") from exc

    def is_known(self, key: str) -> bool:
        """Tell whether a notification with this dedupe key is already stored."""
        return bool(
            self.query("SELECT 1 FROM notifications WHERE dedupe_key = ?", [key])
        )

    def save(
        self,
        notification: Notification,
        key: str,
        intents: Sequence[Intent],
        kept_policies: frozenset[str] = frozenset(),
    ) -> Saved | None:
        """Store a notification and queue its actions; None if a duplicate.

        Notifications saved at the same time share one commit (commits.py).
        """
        now = self._clock()
        return self.grouped(
            lambda conn: intake.insert(
                conn, notification, key, intents, now, kept_policies
            )
        )

    def grouped(self, write: Callable[[sqlite3.Connection], T]) -> T | None:
        """Run `write` in the next group commit (commits.py); None if a duplicate.

        Raises StoreError; a write's other errors are raised as they are.
        """
        try:
            return self._group.run(write)
        except StoreError as exc:
            # A fresh error per request: the group's commit failed for all.
            raise StoreError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write database: {exc}") from exc

    def append_action_audit(self, conn: sqlite3.Connection, action_id: int) -> None:
        audit.append_action(conn, self._clock().isoformat(), action_id)

    def notification_digest(self, notification_id: int) -> dict[str, Any]:
        """What a notification's audit record vouches for, rebuilt from its rows."""
        return intake.notification_digest(self._conn, notification_id)
