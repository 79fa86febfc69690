"""The receiver's operator commands for `aiops`: audit verify and approve.

Both work on the receiver's database file, so they need read (verify) or write
(approve) access to it; a running receiver may keep it open meanwhile.
"""

from __future__ import annotations

import argparse
import fcntl
import getpass
import os
import stat
import sys
from http import HTTPStatus
from typing import Any

from alertmanager_webhook.audit_head import HeadFile
from alertmanager_webhook.jobs import ApprovalError, Jobs
from alertmanager_webhook.store import LARGEST_ID, Store
from alertmanager_webhook.store_errors import (
    DatabaseDamaged,
    DatabaseMissing,
    StoreError,
)
from alertmanager_webhook.worker_process import worker_lock_path

DEFAULT_DATABASE = "aiops-webhook.db"


def _action_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if abs(value) > LARGEST_ID:
        raise argparse.ArgumentTypeError(f"no action has id {text}")
    return value


def add_subcommands(subparsers: Any) -> None:
    """Add `audit verify` and `approve` to an argparse subparsers object."""
    audit = subparsers.add_parser("audit", help="check the receiver's audit log")
    audit_commands = audit.add_subparsers(
        dest="audit_command", metavar="verify", required=True
    )
    verify = audit_commands.add_parser(
        "verify", help="exit non-zero naming the first edited or removed record"
    )
    verify.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        metavar="FILE",
        help="the receiver's database (default: %(default)s)",
    )
    verify.set_defaults(webhook_command="verify", run=run)

    approve = subparsers.add_parser(
        "approve", help="let an action that waits for approval run"
    )
    # One of the two, so that a forgotten id is an error rather than a listing.
    what = approve.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "action_id",
        type=_action_id,
        nargs="?",
        metavar="ID",
        help="the action to approve",
    )
    what.add_argument(
        "--list", action="store_true", help="list the actions waiting for approval"
    )
    approve.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        metavar="FILE",
        help="the receiver's database (default: %(default)s)",
    )
    approve.set_defaults(webhook_command="approve", run=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand add_subcommands() parsed; return the exit status."""
    try:
        _refuse_hard_links(args.database)
        if args.webhook_command == "verify":
            return _verify(args.database)
        if args.list:
            return _list_pending(args.database)
        return _approve(args.database, args.action_id)
    except StoreError as exc:
        print(f"aiops: {exc}", file=sys.stderr)
        return 2


def _refuse_hard_links(database: str) -> None:
    """Refuse a database file with more than one name.

    SQLite keeps a database's WAL beside the name it was opened by: through
    another name, a running receiver's recent commits are unseen, and a write
    lands in a second WAL that corrupts the file when both are replayed.
    """
    try:
        info = os.stat(database)
    except OSError:
        return  # a missing file is reported by the opening itself
    # A folder's link count is that of its entries, not of names for a file.
    if stat.S_ISDIR(info.st_mode):
        raise StoreError(f"database {database!r} is a folder, not a database file")
    links = info.st_nlink
    if links > 1:
        # Which name the receiver uses cannot be told from here, so every
        # name is refused, the receiver's own too.
        raise StoreError(
            f"database {database!r} has {links} names (hard links), and SQLite "
            "keeps its WAL beside the name it is opened by: through another name "
            "than the receiver's, recent writes would be missed or split. Remove "
            f"the other names (find / -xdev -samefile {database} lists them), or "
            "work on a copy of the database and its -wal file"
        )


def _verify(database: str) -> int:
    try:
        store = _open_audited(database)
        try:
            verdict = store.verify()
        finally:
            store.close()
    except DatabaseDamaged as exc:
        # A truncated or overwritten file is tampering evidence, not a usage error.
        print(f"audit log broken: {exc}", file=sys.stderr)
        return 1

    for note in verdict.notes:
        print(f"note: {note}", file=sys.stderr)
    if verdict.ok:
        print(f"audit log intact: {verdict.records} records, head {verdict.head[:16]}")
        return 0
    print(f"audit log broken: {verdict.problem}", file=sys.stderr)
    return 1


def _open_audited(database: str) -> Store:
    """Open for verify; a database gone or emptied while its audit head still
    records a chain is tampering evidence, not a usage error."""
    try:
        return Store.open_existing(database, readonly=True)
    except DatabaseMissing as exc:
        if HeadFile(database).exists():
            raise DatabaseDamaged(
                f"{exc}; its audit head file says it held records"
            ) from exc
        raise


def _approve(database: str, action_id: int) -> int:
    store = Store.open_existing(database)
    try:
        Jobs(store).approve(action_id, f"cli:{getpass.getuser()}")
    except ApprovalError as exc:
        # An id no action has is a wrong argument, a usage error like those
        # argparse reports; an action that no longer waits is a failure.
        if exc.code == HTTPStatus.NOT_FOUND:
            print(
                f"aiops approve: no action has id {action_id}; aiops approve --list "
                "shows those waiting for approval",
                file=sys.stderr,
            )
            return 2
        print(f"aiops approve: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()

    # The worker looks at the queue when its own receiver wakes it, and
    # otherwise once a second; this process has no way to wake it.
    running = _receiver_running(database)
    if running is None:
        when = "a running receiver takes it up at its next look at the queue"
    elif running:
        when = "the running receiver takes it up at its next look at the queue"
    else:
        when = "no receiver is running on this database: it is taken up when one starts"
    print(f"action {action_id} approved; {when}")
    return 0


def _receiver_running(database: str) -> bool | None:
    """Tell whether a receiver's worker holds the database; None if unknown.

    Looks at the worker's lock file (worker_process.take_worker_lock), not at
    the server's lock on the database: a worker starting meanwhile retries its
    lock for seconds, where a server starting would give up at once. The file
    is never created here.
    """
    try:
        fd = os.open(worker_lock_path(database), os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None

    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        # Closing the descriptor also lets go of a lock it took.
        os.close(fd)
    return False


def _list_pending(database: str) -> int:
    store = Store.open_existing(database, readonly=True)
    try:
        rows = store.query(
            "SELECT id, policy, action, plan FROM actions WHERE result = 'pending'"
            " ORDER BY id"
        )
    finally:
        store.close()
    if not rows:
        print("no action waits for approval")
        return 0
    # Tab-separated for scripts, under a header for people.
    print("id\tpolicy\taction\tplan")
    for row in rows:
        print(f"{row['id']}\t{row['policy']}\t{row['action']}\t{row['plan']}")
    return 0
