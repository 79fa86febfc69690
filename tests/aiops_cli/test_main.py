from __future__ import annotations

import pytest

from aiops_cli.main import main


def test_help_says_what_the_command_is_for(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])

    out = " ".join(capsys.readouterr().out.split())
    assert caught.value.code == 0
    assert "Operate prom-aiops from a shell: approve the actions" in out
    assert "Entry point" not in out
    assert "{demo,audit,approve,backtest,recommend-backtest}" in out
    assert "`aiops COMMAND --help` shows a command's options." in out
