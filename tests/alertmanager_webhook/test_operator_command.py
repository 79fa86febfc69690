"""How log hints name `aiops`: as typed on PATH, else by the path as found."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alertmanager_webhook.operator_command import aiops_command


@pytest.fixture
def linked_bin(tmp_path: Path) -> Path:
    """`link/bin`, holding an executable `aiops`, where `link` is a symlink."""
    real = tmp_path / "real" / "bin"
    real.mkdir(parents=True)
    (real / "aiops").write_text("#!/bin/sh\n")
    (real / "aiops").chmod(0o755)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    return tmp_path / "link" / "bin"


def _nowhere(name: str) -> None:
    return None


def test_on_path_it_is_the_bare_name(linked_bin: Path) -> None:
    def found(name: str) -> str:
        return f"/usr/local/bin/{name}"

    assert aiops_command(found, str(linked_bin / "aiops-webhook"), "") == "aiops"


def test_off_path_it_is_the_path_beside_the_command_as_typed(
    linked_bin: Path,
) -> None:
    # The interpreter by another path, as a console script's first line has it.
    python = str(linked_bin.parent.parent / "real" / "bin" / "python3")

    found = aiops_command(_nowhere, str(linked_bin / "aiops-webhook"), python)

    assert found == str(linked_bin / "aiops")


def test_a_relative_command_is_made_absolute_not_resolved(
    linked_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(linked_bin.parent.parent)

    found = aiops_command(_nowhere, "link/bin/aiops-webhook", "")

    assert found == str(linked_bin / "aiops")


def test_without_one_it_is_the_bare_name(tmp_path: Path) -> None:
    command = str(tmp_path / "aiops-webhook")

    assert aiops_command(_nowhere, command, str(tmp_path / "python")) == "aiops"


def test_the_worker_hints_with_the_path_as_the_receiver_was_started(
    linked_bin: Path,
) -> None:
    script = (
        "import sys\n"
        f"sys.argv[0] = {str(linked_bin / 'aiops-webhook')!r}\n"
        "from alertmanager_webhook.worker.results import AIOPS\n"
        "print(AIOPS)\n"
    )
    env = dict(os.environ, PATH=os.defpath)
    env["PYTHONPATH"] = str(Path(__file__).parents[2])

    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert done.stdout.strip() == str(linked_bin / "aiops")
