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


def test_a_signal_mid_write_leaves_the_old_file_and_no_trace(
    tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    from detector.optimizer import backtest
    from tests.detector.optimizer.test_backtest import write_usage

    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    (tmp_path / "alloc.csv").write_text("kept\n")
    pytest_handler = signal.getsignal(signal.SIGTERM)

    def stopped(fh, rows) -> None:
        fh.write("timestamp,series,allocation\n")
        os.kill(os.getpid(), signal.SIGTERM)  # as `timeout` would send it

    monkeypatch.setattr(backtest, "write_rows", stopped)
    argv = ["recommend-backtest", "--usage", str(usage), "--resource"]
    argv += ["pod_memory_util", "--out", str(tmp_path / "alloc.csv")]

    with pytest.raises(SystemExit) as caught:
        main(argv)

    assert caught.value.code == 128 + signal.SIGTERM
    assert (tmp_path / "alloc.csv").read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alloc.csv", "usage.csv.gz"]
    assert signal.getsignal(signal.SIGTERM) is pytest_handler


def test_ctrl_c_is_one_line_and_status_130(
    tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from detector.optimizer import backtest

    def interrupted(args) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(backtest, "run", interrupted)
    argv = ["recommend-backtest", "--usage", "u.csv", "--resource", "vm_cpu"]

    with pytest.raises(SystemExit) as caught:
        main([*argv, "--out", str(tmp_path / "a.csv")])

    assert caught.value.code == 130
    assert capsys.readouterr().err == "aiops: interrupted\n"
