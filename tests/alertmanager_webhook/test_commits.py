"""Group commit: one transaction for writes that queued together."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from alertmanager_webhook.commits import GroupCommit, _Waiting


class Table:
    """A real SQLite table with a UNIQUE column, counting its transactions."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("CREATE TABLE t (k TEXT UNIQUE)")
        self.transactions = 0
        self.fail_commit = False

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.transactions += 1
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            if self.fail_commit:
                raise sqlite3.OperationalError("disk I/O error")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def keys(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT k FROM t ORDER BY k")]


def _insert(key: str):
    def write(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (k) VALUES (?)", (key,))
        return key

    return write


def _broken(conn: sqlite3.Connection) -> str:
    conn.execute("INSERT INTO t (k) VALUES ('half')")
    raise KeyError("a bug in one write")


@pytest.fixture
def table(tmp_path: Path) -> Table:
    return Table(tmp_path / "t.db")


def _group(table: Table) -> GroupCommit[str]:
    return GroupCommit(table.transaction, lambda exc: "t.k" in str(exc))


def test_a_group_is_one_transaction_and_each_write_its_own_fate(table: Table) -> None:
    table.conn.execute("INSERT INTO t (k) VALUES ('old')")
    group = [_Waiting(_insert("a")), _Waiting(_insert("old")), _Waiting(_broken)]
    group.append(_Waiting(_insert("b")))

    _group(table)._commit(group)

    assert table.transactions == 1
    assert table.keys() == ["a", "b", "old"]
    assert [w.done for w in group] == [True] * 4
    assert (group[0].result, group[0].error) == ("a", None)
    assert group[1].duplicate and group[1].error is None
    assert isinstance(group[2].error, KeyError)
    assert group[3].result == "b"


def test_a_failed_commit_fails_every_write_of_the_group(table: Table) -> None:
    table.fail_commit = True
    group = [_Waiting(_insert("a")), _Waiting(_insert("b"))]

    _group(table)._commit(group)

    assert table.keys() == []
    assert all(isinstance(w.error, sqlite3.OperationalError) for w in group)


def test_run_returns_the_result_or_none_for_a_duplicate(table: Table) -> None:
    commits = _group(table)

    assert commits.run(_insert("a")) == "a"
    assert commits.run(_insert("a")) is None
    with pytest.raises(KeyError):
        commits.run(_broken)
    assert table.keys() == ["a"]


def test_writes_from_many_threads_are_each_stored_once(table: Table) -> None:
    commits = _group(table)
    results: list[str | None] = []
    lock = threading.Lock()

    def send(worker: int) -> None:
        for i in range(25):
            # Every key twice, from two threads: one wins, one is a duplicate.
            got = commits.run(_insert(f"{worker // 2}-{i}"))
            with lock:
                results.append(got)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stored = table.keys()
    assert len(stored) == len(set(stored)) == 4 * 25
    assert sorted(r for r in results if r is not None) == stored
    assert results.count(None) == 4 * 25
    assert table.transactions <= 8 * 25
