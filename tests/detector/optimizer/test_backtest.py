from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detector.optimizer import backtest

REPO = Path(__file__).resolve().parents[3]
SCORER = REPO.parent / "shared" / "tools" / "score-allocation"


def write_usage(path: Path) -> None:
    """Three containers over eight hours at 57 s, as the GenAI files are laid out."""
    rng = np.random.default_rng(21)
    with gzip.open(path, "wt", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("timestamp", "container", "value"))
        for k, name in enumerate(("c1", "c2", "c3")):
            t = 1_662_858_720.0 + 57.0 * np.arange(505) + 300.0 * k
            u = (
                0.4
                + 0.1 * k
                + 0.05 * np.sin(t / 900.0)
                + 0.05 * (rng.random(t.size) < 0.03)
            )
            for ti, ui in zip(t, u, strict=True):
                writer.writerow((repr(float(ti)), name, repr(float(ui))))
        writer.writerow((repr(1_662_858_720.0), "short", "0.5"))


def args(tmp_path: Path, usage: Path, **extra) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aiops")
    backtest.add_subcommands(parser.add_subparsers(dest="command"))
    argv = [
        "recommend-backtest",
        "--usage",
        str(usage),
        "--resource",
        "pod_memory_util",
    ]
    argv += ["--out", str(tmp_path / "alloc.csv")]
    for key, value in extra.items():
        argv += [f"--{key}", value]
    return parser.parse_args(argv)


def test_writes_the_allocation_csv(tmp_path: Path, capsys) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)

    assert backtest.run(args(tmp_path, usage)) == 0

    with open(tmp_path / "alloc.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["timestamp", "series", "allocation"]
    assert {r[1] for r in rows[1:]} == {"c1", "c2", "c3"}
    assert "1 too short" in capsys.readouterr().err


@pytest.mark.skipif(
    not SCORER.is_file(), reason="needs ../shared/tools/score-allocation"
)
@pytest.mark.parametrize(
    "policy, name",
    [
        ("bandit", "alloc.csv"),
        ("vpa-style", "alloc.csv"),
        ("vpa-style", "alloc.csv.gz"),
    ],
)
def test_the_scorer_accepts_the_csv(tmp_path: Path, policy: str, name: str) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    out = tmp_path / name
    assert backtest.run(args(tmp_path, usage, policy=policy, out=str(out))) == 0

    done = subprocess.run(
        [sys.executable, str(SCORER), str(usage), "pod_memory_util"]
        + [str(out), "--json", "-"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["results"][0]
    assert result["series_scored"] == 3
    assert result["series_too_short"] == 1
    assert result["lookahead_suspects"] == 0


def test_an_out_ending_in_gz_is_the_csv_gzipped(tmp_path: Path) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    packed = tmp_path / "alloc.csv.gz"

    assert backtest.run(args(tmp_path, usage, policy="vpa-style")) == 0
    assert backtest.run(args(tmp_path, usage, policy="vpa-style", out=str(packed))) == 0

    plain = (tmp_path / "alloc.csv").read_bytes()
    assert gzip.decompress(packed.read_bytes()) == plain
    # No time of writing in the header: a second run writes the same bytes.
    again = tmp_path / "again" / "alloc.csv.gz"
    again.parent.mkdir()
    assert backtest.run(args(tmp_path, usage, policy="vpa-style", out=str(again))) == 0
    assert again.read_bytes() == packed.read_bytes()


@pytest.mark.parametrize("far", ["1e20", "1662869520000"], ids=["1e20", "in ms"])
def test_a_timestamp_far_off_the_others_is_refused_before_the_replay(
    tmp_path: Path, capsys, far: str
) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    with gzip.open(usage, "at", newline="") as fh:
        fh.write(f"{far},c1,0.5\n")

    assert backtest.run(args(tmp_path, usage)) == 2

    err = capsys.readouterr().err
    assert f"line 1518: timestamp {float(far)!r} (series 'c1')" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "alloc.csv").exists()


def test_a_file_of_another_resource_is_refused(tmp_path: Path, capsys) -> None:
    usage = tmp_path / "usage.csv"
    usage.write_text("timestamp,vm,cpu_max_percent\n0,1,50\n")

    assert backtest.run(args(tmp_path, usage)) == 2

    assert "no column 'container'" in capsys.readouterr().err


def test_an_output_folder_that_does_not_exist_is_refused_before_the_replay(
    tmp_path: Path, capsys
) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    out = tmp_path / "missing" / "alloc.csv"

    assert backtest.run(args(tmp_path, usage, out=str(out))) == 1

    err = capsys.readouterr().err
    assert "no folder" in err and "missing" in err


def test_readings_above_the_full_size_are_refused(tmp_path: Path, capsys) -> None:
    # Percentages of GPU time are no fraction of a memory limit.
    usage = tmp_path / "usage.csv"
    usage.write_text("timestamp,container,value\n0,c1,0.5\n0,c2,87.5\n57,c2,3\n")

    assert backtest.run(args(tmp_path, usage)) == 2

    err = capsys.readouterr().err
    assert "up to 87.5 (series 'c2')" in err
    assert "full size of pod_memory_util (1, " in err
    assert not (tmp_path / "alloc.csv").exists()


@pytest.mark.parametrize(
    "name, content",
    [
        ("usage.csv", b"timestamp,container,value\n0,caf\xe9,0.5\n"),
        # A gzip header, then a deflate block of the reserved type 3.
        ("usage.csv.gz", bytes.fromhex("1f8b0800000000000003") + b"\x07" * 16),
        ("usage.csv", b'timestamp,container,value\n0,c1,"' + b"1" * 200_000),
    ],
    ids=["not utf-8", "bad deflate", "field over the limit"],
)
def test_an_unreadable_file_is_one_line_naming_it(
    tmp_path: Path, capsys, name: str, content: bytes
) -> None:
    usage = tmp_path / name
    usage.write_bytes(content)

    assert backtest.run(args(tmp_path, usage)) == 2

    err = capsys.readouterr().err
    assert err.startswith("aiops recommend-backtest: ") and name in err
    assert err.count("\n") == 1


def test_rows_the_loading_rules_drop_are_summed_up_on_one_line(
    tmp_path: Path, capsys
) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    with gzip.open(usage, "at", newline="") as fh:
        fh.write("1662858720.0,,0.5\n1662858720.0,c1,-0.25\n")

    assert backtest.run(args(tmp_path, usage)) == 0

    notes = [n for n in capsys.readouterr().err.splitlines() if "usage data" in n]
    assert notes == [
        "pod_memory_util: usage data: 1 rows with an empty series id, "
        "1 negative readings clipped to 0, "
        "1 duplicate timestamps (largest reading kept)"
    ]


@pytest.mark.parametrize(
    "out, message",
    [
        ("", "cannot write '': the name is empty"),
        (".", "it is a folder"),
        ("missing/dir/", "it ends in a slash"),
        ("a" * 300, "File name too long"),
    ],
    ids=["empty", "a folder", "a folder's name", "too long"],
)
def test_an_out_that_names_no_file_is_refused_before_the_replay(
    tmp_path: Path, capsys, monkeypatch, out: str, message: str
) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    monkeypatch.chdir(tmp_path)

    assert backtest.run(args(tmp_path, usage, out=out)) == 1

    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert "(bandit)" not in err  # no progress: the replay did not start


def test_an_out_that_is_the_usage_file_is_refused(tmp_path: Path, capsys) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    before = usage.read_bytes()

    assert backtest.run(args(tmp_path, usage, out=str(usage))) == 2

    assert "is the --usage file" in capsys.readouterr().err
    assert usage.read_bytes() == before


def test_a_folder_that_cannot_be_written_is_refused_before_the_replay(
    tmp_path: Path, capsys
) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    if os.access(folder, os.W_OK):
        pytest.skip("this user writes in any folder, as root does")

    assert backtest.run(args(tmp_path, usage, out=str(folder / "a.csv"))) == 1

    err = capsys.readouterr().err
    assert "locked' is not writable" in err
    assert "(bandit)" not in err


def disk_full(fh, rows) -> None:
    """A write_rows that runs out of disk after the header."""
    fh.write("timestamp,series,allocation\n")
    raise OSError(28, "No space left on device")


def test_an_out_of_a_dash_is_standard_output(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    monkeypatch.chdir(tmp_path)

    assert backtest.run(args(tmp_path, usage, out="-")) == 0

    out = capsys.readouterr().out
    assert out.splitlines()[0] == "timestamp,series,allocation"
    assert {r[1] for r in csv.reader(out.splitlines()[1:])} == {"c1", "c2", "c3"}
    assert not (tmp_path / "-").exists()


def test_a_write_that_fails_leaves_the_old_file_whole(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    (tmp_path / "alloc.csv").write_text("kept\n")

    monkeypatch.setattr(backtest, "write_rows", disk_full)

    assert backtest.run(args(tmp_path, usage)) == 1

    assert (tmp_path / "alloc.csv").read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alloc.csv", "usage.csv.gz"]
    assert "No space left on device" in capsys.readouterr().err


def test_a_write_through_a_link_fails_whole_and_keeps_the_link(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    (tmp_path / "real.csv").write_text("kept\n")
    (tmp_path / "alloc.csv").symlink_to(tmp_path / "real.csv")

    monkeypatch.setattr(backtest, "write_rows", disk_full)
    assert backtest.run(args(tmp_path, usage)) == 1
    assert (tmp_path / "real.csv").read_text() == "kept\n"

    monkeypatch.undo()
    assert backtest.run(args(tmp_path, usage)) == 0
    assert (tmp_path / "alloc.csv").is_symlink()
    assert (tmp_path / "real.csv").read_text().startswith("timestamp,series")


def test_a_rewritten_file_keeps_its_mode_and_spares_other_files(
    tmp_path: Path,
) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    (tmp_path / "alloc.csv").write_text("old\n")
    os.chmod(tmp_path / "alloc.csv", 0o640)
    # A name the writer might have picked for its own hidden file.
    (tmp_path / ".alloc.csv.tmp").write_text("notes\n")

    assert backtest.run(args(tmp_path, usage)) == 0

    assert (tmp_path / "alloc.csv").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / ".alloc.csv.tmp").read_text() == "notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".alloc.csv.tmp",
        "alloc.csv",
        "usage.csv.gz",
    ]


def test_a_reader_that_stops_early_is_no_failure(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `--out - | head -1` ends once head has its line.
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)

    def reader_gone(fh, rows) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(backtest, "write_rows", reader_gone)
    with open(tmp_path / "stdout", "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)

        assert backtest.run(args(tmp_path, usage, out="-")) == 0

    assert "cannot write" not in capsys.readouterr().err


def test_dev_stdout_is_written_as_itself(tmp_path: Path) -> None:
    # Resolved, /dev/stdout on a pipe names "pipe:[...]", which no path opens.
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    command = [sys.executable, "-m", "aiops_cli", "recommend-backtest"]
    command += ["--usage", str(usage), "--resource", "pod_memory_util"]
    command += ["--policy", "vpa-style", "--out", "/dev/stdout"]

    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "timestamp,series,allocation"


def test_a_closed_standard_output_is_refused_before_the_replay(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    monkeypatch.setattr(sys, "stdout", None)

    assert backtest.run(args(tmp_path, usage, out="-")) == 1

    assert "standard output is closed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("link_to", "reason"),
    [("loop.csv", "it is a loop of links"), ("nodir/x.csv", "no folder")],
)
def test_a_link_no_file_can_be_written_through_is_refused_before_the_replay(
    tmp_path: Path, capsys, link_to: str, reason: str
) -> None:
    usage = tmp_path / "usage.csv.gz"
    write_usage(usage)
    (tmp_path / "loop.csv").symlink_to(tmp_path / "loop.csv")
    if link_to != "loop.csv":
        (tmp_path / "alloc.csv").symlink_to(tmp_path / link_to)
    out = "loop.csv" if link_to == "loop.csv" else "alloc.csv"

    assert backtest.run(args(tmp_path, usage, out=str(tmp_path / out))) == 1

    err = capsys.readouterr().err
    assert reason in err
    assert "%" not in err  # refused before the replay's progress bar
