"""The start journal: which actions began, read back after a crash."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from alertmanager_webhook import survivors
from alertmanager_webhook.start_journal import StartJournal


def test_marks_are_read_back_spent_and_emptied_by_a_start(tmp_path: Path) -> None:
    journal = StartJournal.beside(str(tmp_path / "webhook.db"))
    assert journal.begun() is None  # no journal: nothing can be trusted

    journal.open()
    journal.mark(7)()
    journal.mark(12)()
    assert journal.begun() == {7, 12}
    folder = tmp_path / "webhook.db.started"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "7").stat().st_mode & 0o777 == 0o600

    journal.settle(7)
    journal.settle(99)  # never began: nothing to spend
    assert journal.begun() == {12}

    journal.open()
    assert journal.begun() == set()


def test_a_durable_mark_is_made_and_synced_by_its_call(tmp_path: Path) -> None:
    journal = StartJournal(str(tmp_path / "webhook.db.started"), fsync=True)
    journal.open()

    mark = journal.mark(3)
    assert mark.durable
    mark()

    assert journal.begun() == {3}


def test_a_worker_driven_without_a_start_still_gets_a_folder(tmp_path: Path) -> None:
    journal = StartJournal(str(tmp_path / "webhook.db.started"))

    journal.mark(5)()

    assert journal.begun() == {5}


def test_an_older_receivers_journal_file_trusts_nothing_and_is_replaced(
    tmp_path: Path,
) -> None:
    path = tmp_path / "webhook.db.started"
    path.write_text("7\n12\n")
    journal = StartJournal(str(path))

    assert journal.begun() is None
    journal.open()
    assert path.is_dir() and journal.begun() == set()


def test_a_name_that_is_not_an_id_trusts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "webhook.db.started"
    journal = StartJournal(str(path))
    journal.open()
    journal.mark(7)()

    (path / "7.tmp").touch()
    assert journal.begun() is None
    (path / "7.tmp").unlink()
    (path / "\u0661").touch()  # a digit, but not an ASCII one
    assert journal.begun() is None


def test_an_unreadable_journal_trusts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "webhook.db.started"
    path.symlink_to(path)  # a loop: every read of it fails

    assert StartJournal(str(path)).begun() is None


def test_a_journal_in_the_way_of_a_folder_stops_the_open(tmp_path: Path) -> None:
    path = tmp_path / "webhook.db.started"
    os.mkfifo(path)

    with pytest.raises(OSError):
        StartJournal(str(path)).open()
    assert StartJournal(str(path)).begun() is None


def test_a_mark_holds_its_programs_pid_and_start_when_recorded(
    tmp_path: Path,
) -> None:
    journal = StartJournal(str(tmp_path / "webhook.db.started"))
    journal.open()
    mark = journal.mark(8)
    mark()
    assert journal.program(8) is None  # began, its program not yet known

    mark.record(os.getpid())

    started = psutil.Process(os.getpid()).create_time()
    assert journal.program(8) == (os.getpid(), started)
    assert journal.begun() == {8}


def _opened(tmp_path: Path) -> tuple[StartJournal, Path]:
    """A journal opened beside a database in `tmp_path`, and its folder."""
    folder = tmp_path / "webhook.db.started"
    journal = StartJournal(str(folder))
    journal.open()
    return journal, folder


@pytest.mark.parametrize(
    "content",
    ['{"target": "host a", "plan": "p"}', '{"attempt": true}', '{"attempt": 0}', "1 2"],
    ids=["no-attempt", "boolean", "zero", "older-receiver"],
)
def test_a_mark_that_names_no_attempt_says_so(tmp_path: Path, content: str) -> None:
    journal, folder = _opened(tmp_path)
    (folder / "8").write_text(content)

    assert journal.attempt(8) is None


def test_a_mark_is_replaced_whole_when_its_program_is_recorded(
    tmp_path: Path,
) -> None:
    # Rewritten in place it was empty for a moment; a crash then lost the
    # pid of a program that went on running. What it named stays.
    journal, folder = _opened(tmp_path)
    mark = journal.mark(8, "host a", "poke host a", attempt=2)
    mark()
    before = (folder / "8").stat().st_ino
    assert journal.attempt(8) == 2

    mark.record(os.getpid())

    assert (folder / "8").stat().st_ino != before
    assert sorted(p.name for p in folder.iterdir()) == ["8"]
    assert journal.program(8) is not None
    assert journal.attempt(8) == 2
    assert journal.named(8) == ("host a", "poke host a")


def test_a_mark_says_when_its_attempt_began(tmp_path: Path) -> None:
    # After a crash the attempt counts toward the limits from then.
    journal, folder = _opened(tmp_path)
    mark = journal.mark(8, "host a", "poke host a", attempt=1, began_unix=1000.0)
    mark()
    mark.record(os.getpid())
    assert journal.began_at(8) == 1000.0

    # An older receiver's marks: its program's start, or nothing.
    (folder / "9").write_text('{"pid": 4211, "started": 900.5, "attempt": 1}\n')
    (folder / "10").write_text('{"target": "host a", "attempt": 1}\n')
    assert journal.began_at(9) == 900.5
    assert journal.began_at(10) is None


def test_a_rewrite_cut_short_by_a_crash_leaves_the_journal_trusted(
    tmp_path: Path,
) -> None:
    journal, folder = _opened(tmp_path)
    journal.mark(8, "host a", "poke host a")()
    (folder / "8.new").write_text('{"pid": 1')

    assert journal.begun() == {8}
    journal.open(keep=frozenset({8}))
    assert sorted(p.name for p in folder.iterdir()) == ["8"]


def test_a_pid_whose_process_has_gone_or_changed_is_not_watched() -> None:
    pid = os.getpid()
    start = psutil.Process(pid).create_time()
    seen: list[int] = []

    assert survivors.watch(pid, start + 1, 1.0, lambda _: seen.append(1)) is None
    assert survivors.watch(2**22 + 1, start, 1.0, lambda _: seen.append(1)) is None
    assert seen == []
