"""The start journal: which actions began, read back after a crash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alertmanager_webhook.start_journal import COMPACT_BYTES, StartJournal


def test_marks_are_read_back_and_a_start_empties_them(tmp_path: Path) -> None:
    journal = StartJournal.beside(str(tmp_path / "webhook.db"))
    assert journal.begun() is None  # no journal: nothing can be trusted

    journal.open()
    journal.mark(7)()
    journal.mark(12)()
    assert journal.begun() == {7, 12}
    assert (tmp_path / "webhook.db.started").stat().st_mode & 0o777 == 0o600

    journal.open()
    assert journal.begun() == set()
    journal.close()


def test_a_line_cut_short_or_foreign_trusts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "webhook.db.started"
    journal = StartJournal(str(path))

    path.write_text("7\n1")
    assert journal.begun() is None
    path.write_text("7\nnot an id\n")
    assert journal.begun() is None


def test_the_journal_is_emptied_only_when_no_action_is_in_flight(
    tmp_path: Path,
) -> None:
    path = tmp_path / "webhook.db.started"
    journal = StartJournal(str(path))
    journal.open()
    lines = COMPACT_BYTES // len("100000\n") + 1
    for action_id in range(100000, 100000 + lines):
        journal.mark(action_id)()

    journal.entering()
    journal.entering()
    journal.mark(1)()
    journal.left()
    assert 1 in (journal.begun() or set())  # one action still in flight

    journal.left()
    assert journal.begun() == set()
    journal.mark(2)()
    assert journal.begun() == {2}
    assert os.path.getsize(path) == 2
    journal.close()


@pytest.mark.parametrize("damage", ["bytes", "folder"])
def test_an_unreadable_journal_trusts_nothing(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "webhook.db.started"
    if damage == "bytes":
        path.write_bytes(b"7\n\xff\n")
    else:
        path.mkdir()

    assert StartJournal(str(path)).begun() is None
