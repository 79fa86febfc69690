"""`aiops approve`: what its command line takes, and what it says it has done."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alertmanager_webhook import cli
from alertmanager_webhook.worker_process import take_worker_lock

from .conftest import Receiver, make_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiops")
    cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.fixture
def database(
    make_receiver: Callable[..., Receiver], firing: dict[str, Any], tmp_path: Path
) -> str:
    """A receiver's database in which action 1 waits for approval."""
    receiver = make_receiver(make_config(mode="approve"))
    receiver.post(firing)
    receiver.worker.drain()
    return str(tmp_path / "webhook.db")


def _approve(database: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = cli.run(_parser().parse_args(["approve", "1", "--database", database]))
    return status, capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--database", "x.db"], "one of the arguments ID --list is required"),
        (["--list", "2"], "argument ID: not allowed with argument --list"),
        (["2", "--list"], "argument --list: not allowed with argument ID"),
    ],
    ids=["neither", "list-then-id", "id-then-list"],
)
def test_approve_takes_an_id_or_list_but_not_both(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["approve", *argv])

    assert exited.value.code == 2
    assert f"aiops approve: error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("receiver_ran", [False, True], ids=["never", "stopped"])
def test_approval_without_a_running_receiver_says_it_waits_for_one(
    database: str, capsys: pytest.CaptureFixture[str], receiver_ran: bool
) -> None:
    if receiver_ran:
        # A stopped receiver leaves its worker's lock file, no longer held.
        os.close(take_worker_lock(database))

    status, out = _approve(database, capsys)

    assert status == 0
    assert out == (
        "action 1 approved; no receiver is running on this database: it is "
        "taken up when one starts\n"
    )
    assert Path(database + ".worker-lock").exists() is receiver_ran


def test_approval_beside_a_running_receiver_says_when_it_is_taken_up(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    held = take_worker_lock(database)
    try:
        status, out = _approve(database, capsys)
    finally:
        os.close(held)

    assert status == 0
    assert out == (
        "action 1 approved; the running receiver takes it up at its next look "
        "at the queue\n"
    )


@pytest.mark.parametrize(
    "command", [["approve", "1"], ["approve", "--list"], ["audit", "verify"]]
)
def test_a_database_with_a_second_name_is_refused(
    database: str,
    tmp_path: Path,
    command: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Through a hard link SQLite would read and write a WAL of its own.
    link = tmp_path / "link.db"
    os.link(database, link)

    status = cli.run(_parser().parse_args([*command, "--database", str(link)]))

    assert status == 2
    assert "has 2 names (hard links)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [["approve", "1"], ["approve", "--list"], ["audit", "verify"]]
)
def test_a_folder_given_as_the_database_is_named_as_one(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "webhook.db"
    folder.mkdir()

    status = cli.run(_parser().parse_args([*command, "--database", str(folder)]))

    assert status == 2
    err = capsys.readouterr().err
    assert "is a folder, not a database file" in err
    assert "hard links" not in err


def test_approving_an_id_no_action_has_is_a_usage_error(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(["approve", "7", "--database", database])

    status = cli.run(args)

    assert status == 2
    assert capsys.readouterr().err == (
        "aiops approve: no action has id 7; aiops approve --list shows those "
        "waiting for approval\n"
    )


def test_approving_an_action_that_no_longer_waits_fails(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _approve(database, capsys)[0] == 0
    args = _parser().parse_args(["approve", "1", "--database", database])

    status = cli.run(args)

    assert status == 1
    assert capsys.readouterr().err == (
        "aiops approve: action 1 is approved, not pending approval\n"
    )
