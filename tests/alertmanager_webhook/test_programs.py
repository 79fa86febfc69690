"""Programs of command policies, found on PATH once at start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alertmanager_webhook.actuators.command import Command
from alertmanager_webhook.programs import resolve_programs

from .conftest import make_config

MATCH = {"alertname": "X"}


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A folder on a PATH of its own, holding `aiops-mark` and `odd{name}`."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("aiops-mark", "odd{name}"):
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return folder


def _command(name: str, *argv: str) -> dict[str, object]:
    return {"name": name, "match": MATCH, "action": "command", "argv": list(argv)}


def test_a_bare_name_becomes_the_path_found_and_is_logged(
    bin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(
        policies=[
            _command("mark", "aiops-mark", "{host}"),
            {"name": "watch", "match": MATCH, "action": "none"},
        ]
    )

    with caplog.at_level("INFO", logger="alertmanager_webhook.programs"):
        resolved = resolve_programs(config, _on(bin_dir))

    mark, watch = resolved.policies
    assert mark.argv == (str(bin_dir / "aiops-mark"), "{host}")
    assert watch == config.policies[1]
    assert [r.getMessage() for r in caplog.records] == [
        f"program policy=mark program='aiops-mark' path={bin_dir / 'aiops-mark'}"
    ]
    # What a plan shows, and runs, is the file found at start.
    plan = Command().plan({"host": "gpu-07"}, mark, {})
    assert plan.spec["argv"] == [str(bin_dir / "aiops-mark"), "gpu-07"]


def test_a_name_with_doubled_braces_is_found_by_its_braces(bin_dir: Path) -> None:
    config = make_config(policies=[_command("odd", "odd{{name}}")])

    [odd] = resolve_programs(config, _on(bin_dir)).policies

    plan = Command().plan({}, odd, {})
    assert plan.spec["argv"] == [str(bin_dir / "odd{name}")]


def test_a_relative_path_entry_is_made_absolute(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(bin_dir.parent)
    config = make_config(policies=[_command("mark", "aiops-mark")])

    [mark] = resolve_programs(config, _on(Path("bin"))).policies

    assert mark.argv == (str(bin_dir / "aiops-mark"),)


def test_a_missing_program_is_warned_of_and_left_to_be_found_at_run_time(
    bin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(
        policies=[
            _command("gone", "no-such-x"),
            _command("given", str(bin_dir / "aiops-mark")),
        ]
    )

    with caplog.at_level("WARNING", logger="alertmanager_webhook.programs"):
        resolved = resolve_programs(config, _on(bin_dir))

    assert resolved.policies == config.policies
    assert [r.getMessage() for r in caplog.records] == [
        "program not found or not executable policy=gone program='no-such-x'; "
        "its actions will fail until it is installed"
    ]


def _on(folder: Path):
    def which(name: str) -> str | None:
        return shutil.which(name, path=str(folder))

    return which
