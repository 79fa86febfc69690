from __future__ import annotations

import csv
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from detector import backtest
from detector.config import ModelConfig

NAB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab" / "data"
SEED = 20240611


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "value"])
        writer.writerows(rows)


def read_scores(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def five_minute_rows(n: int, spike_at: int | None = None) -> list[tuple[str, str]]:
    values = 10.0 + np.random.default_rng(SEED).normal(0, 1, n)
    if spike_at is not None:
        values[spike_at] += 50.0
    rows = []
    for i, v in enumerate(values):
        minutes = 2 + 5 * i  # off the 5-minute grid, as NAB's files often are
        day, rest = divmod(minutes, 1440)
        stamp = f"2014-03-{1 + day:02d} {rest // 60:02d}:{rest % 60:02d}:00"
        rows.append((stamp, repr(float(v))))
    return rows


def run(data: Path, out: Path, config: Path | None = None, *more: str) -> int:
    # Through backtest.parse, as the benchmarks call it.
    argv = ["--data", str(data), "--out", str(out), *more]
    if config is not None:
        argv += ["--config.file", str(config)]
    return backtest.run(backtest.parse(argv))


def test_every_row_of_every_file_gets_a_score_at_the_same_path(tmp_path: Path) -> None:
    write_csv(tmp_path / "in" / "a" / "one.csv", five_minute_rows(700))
    write_csv(tmp_path / "in" / "two.csv", five_minute_rows(50))

    assert run(tmp_path / "in", tmp_path / "out") == 0

    for rel, n in (("a/one.csv", 700), ("two.csv", 50)):
        rows = read_scores(tmp_path / "out" / rel)
        assert len(rows) == n
        assert set(rows[0]) == {"timestamp", "score", "anomaly"}
        assert all(r["anomaly"] in ("0", "1") for r in rows)
        assert all(math.isfinite(float(r["score"])) for r in rows)


def test_the_service_models_decide_as_they_would_live(tmp_path: Path) -> None:
    write_csv(tmp_path / "in" / "s.csv", five_minute_rows(600, spike_at=400))
    config = tmp_path / "detector.yml"
    config.write_text("model:\n  kind: robust\n  window: 100\n  min_points: 30\n")

    assert run(tmp_path / "in", tmp_path / "out", config) == 0

    rows = read_scores(tmp_path / "out" / "s.csv")
    assert [i for i, r in enumerate(rows) if r["anomaly"] == "1"] == [400]


def test_a_querys_own_model_is_used_when_named(tmp_path: Path) -> None:
    write_csv(tmp_path / "in" / "s.csv", five_minute_rows(600, spike_at=400))
    config = tmp_path / "detector.yml"
    config.write_text(
        "model: {kind: ensemble}\n"
        "queries:\n"
        "  - name: cpu\n"
        "    promql: up\n"
        "    model: {kind: robust, window: 100, min_points: 30}\n"
    )

    assert run(tmp_path / "in", tmp_path / "out", config, "--query", "cpu") == 0

    rows = read_scores(tmp_path / "out" / "s.csv")
    assert [i for i, r in enumerate(rows) if r["anomaly"] == "1"] == [400]


@pytest.mark.parametrize(
    ("text", "more", "message"),
    [
        ("modle: {kind: robust}\n", (), "unknown key 'modle'"),
        (
            "queries:\n  - name: cpu\n    promql: up\n    model: {kind: prophet}\n",
            (),
            "queries[0].model.kind",
        ),
        ("model: {kind: robust}\n", ("--query", "gpu"), "no query 'gpu'"),
        ("model: {kind: robust}\n", ("--cycle-seconds", "0"), "--cycle-seconds"),
        ("model: {kind: robust}\n", ("--cycle-seconds", "inf"), "finite number"),
        ("model: {kind: robust}\n", ("--cycle-seconds", "nan"), "finite number"),
    ],
)
def test_a_bad_config_or_flag_is_refused_naming_it(
    tmp_path: Path, capsys, text: str, more: tuple[str, ...], message: str
) -> None:
    write_csv(tmp_path / "in" / "s.csv", five_minute_rows(50))
    config = tmp_path / "detector.yml"
    config.write_text(text)

    assert run(tmp_path / "in", tmp_path / "out", config, *more) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_rows_without_a_value_or_out_of_order_keep_the_score_before(
    tmp_path: Path,
) -> None:
    rows = five_minute_rows(60)
    rows[20] = (rows[20][0], "NaN")
    rows[40] = (rows[10][0], rows[40][1])  # the clock stepped back
    recording_path = tmp_path / "in" / "s.csv"
    write_csv(recording_path, rows)
    recording = backtest.read_recording(recording_path)

    score, anomaly = backtest.replay(recording, ModelConfig(kind="robust"), 86400.0)

    assert score.size == anomaly.size == 60
    assert score[20] == score[19] and score[40] == score[39]


def test_values_that_are_not_numbers_are_gaps_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = five_minute_rows(30)
    rows[5] = (rows[5][0], "n/a")
    rows[9] = (rows[9][0], "")
    rows[12] = (rows[12][0], "NaN")  # a number: not worth a word
    recording_path = tmp_path / "in" / "s.csv"
    write_csv(recording_path, rows)

    with caplog.at_level("WARNING", logger="detector.backtest"):
        recording = backtest.read_recording(recording_path)

    assert [r.getMessage() for r in caplog.records] == [
        f"values that are not numbers scored as gaps file={recording_path} "
        "count=2 first_line=7 first_value='n/a'"
    ]
    assert np.isnan(recording.values[[5, 9, 12]]).all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,val\n1,2\n", "timestamp,value header"),
        ("timestamp,value\nnow,1\n", "bad timestamp 'now' (Invalid isoformat"),
        ("timestamp,value\n1394163660,1\n", "such as 2014-02-14 14:30:00"),
        ("timestamp,value\n2014-02-31 10:00:00,1\n", "day is out of range"),
    ],
)
def test_bad_files_are_refused_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.csv").write_text(text)

    assert run(tmp_path / "in", tmp_path / "out") == 2

    err = capsys.readouterr().err
    assert "bad.csv" in err and message in err


def test_an_empty_folder_is_an_error(tmp_path: Path, capsys) -> None:
    assert run(tmp_path, tmp_path / "out") == 2
    assert "no CSV files" in capsys.readouterr().err


def test_gzipped_files_alone_are_named_as_such(tmp_path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv.gz").write_bytes(b"")

    assert run(tmp_path / "in", tmp_path / "out") == 2
    assert "(1 .csv.gz: unpack them first)" in capsys.readouterr().err


def test_an_out_that_would_overwrite_the_inputs_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "in"
    write_csv(data / "a" / "one.csv", five_minute_rows(50))
    before = (data / "a" / "one.csv").read_bytes()
    (tmp_path / "link").symlink_to(data)

    assert run(data, data) == 2
    assert run(data, tmp_path / "link") == 2

    assert "would overwrite the input" in capsys.readouterr().err
    assert (data / "a" / "one.csv").read_bytes() == before


def test_an_out_that_is_a_file_is_refused_before_the_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "in" / "one.csv", five_minute_rows(50))
    (tmp_path / "scores").write_text("kept\n")

    assert run(tmp_path / "in", tmp_path / "scores") == 2

    assert "is a file; the scores go to a folder" in capsys.readouterr().err
    assert (tmp_path / "scores").read_text() == "kept\n"


def hourly_rows(days: int) -> list[tuple[str, str]]:
    start = datetime(2014, 1, 1, tzinfo=UTC)
    values = 10.0 + np.random.default_rng(SEED).normal(0, 1, days * 24)
    return [
        ((start + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S"), repr(float(v)))
        for i, v in enumerate(values)
    ]


def test_a_recording_longer_than_the_detectors_history_is_scored(
    tmp_path: Path,
) -> None:
    # 100 days: more than the 90 days of history the detector may keep.
    write_csv(tmp_path / "in" / "long.csv", hourly_rows(100))

    assert run(tmp_path / "in", tmp_path / "out") == 0

    assert len(read_scores(tmp_path / "out" / "long.csv")) == 2400


def test_a_date_years_off_the_others_is_refused_by_its_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = five_minute_rows(30)
    rows[25] = ("2041-03-01 02:02:00", rows[25][1])
    write_csv(tmp_path / "in" / "s.csv", rows)

    assert run(tmp_path / "in", tmp_path / "out") == 2

    err = capsys.readouterr().err
    assert "lines 31 and 27 are 9862 days apart" in err
    assert "mistyped date" in err


@pytest.mark.skipif(not NAB.is_dir(), reason="needs ../shared/data/nab")
def test_a_nab_file_replays_in_full(tmp_path: Path) -> None:
    source = NAB / "realAWSCloudwatch" / "ec2_network_in_257a54.csv"
    recording = backtest.read_recording(source)

    score, anomaly = backtest.replay(recording, ModelConfig(), 86400.0)

    assert score.size == recording.values.size == 4032
    # The one labelled event, a burst of traffic on 2014-04-15, is the only alarm.
    flagged = [recording.texts[i][:10] for i in np.flatnonzero(anomaly)]
    assert flagged and set(flagged) <= {"2014-04-15", "2014-04-16"}


def test_a_clock_that_steps_back_once_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two rows repeat the hour before them, as a daylight-saving step does:
    # they keep the score before them, and the operator hears of it once.
    rows = five_minute_rows(30)
    rows[20:22] = [rows[18], rows[19]]
    recording_path = tmp_path / "in" / "s.csv"
    write_csv(recording_path, rows)

    with caplog.at_level("WARNING", logger="detector.backtest"):
        backtest.read_recording(recording_path)

    assert [r.getMessage() for r in caplog.records] == [
        "rows not later than an earlier row keep the score before them (a clock "
        "that stepped back, or a file not sorted by time) "
        f"file={recording_path} count=2 of=30 first_line=22"
    ]


def test_a_file_out_of_time_order_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Written newest first, every row but one would keep a score of zero.
    write_csv(tmp_path / "in" / "s.csv", list(reversed(five_minute_rows(30))))

    assert run(tmp_path / "in", tmp_path / "out") == 2

    err = capsys.readouterr().err
    assert "29 of 30 rows are not later than an earlier row (first at line 3)" in err
    assert "sort the file by its timestamps, oldest first" in err
    assert not (tmp_path / "out").exists()


def test_a_byte_order_mark_is_no_part_of_the_header(tmp_path: Path) -> None:
    path = tmp_path / "in" / "s.csv"
    write_csv(path, five_minute_rows(30))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())

    assert run(tmp_path / "in", tmp_path / "out") == 0
    assert len(read_scores(tmp_path / "out" / "s.csv")) == 30


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("-", "not to standard output"),
        ("in/scores", "is inside --data"),
    ],
)
def test_an_out_no_folder_of_scores_can_be_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    out: str,
    message: str,
) -> None:
    write_csv(tmp_path / "in" / "s.csv", five_minute_rows(30))
    monkeypatch.chdir(tmp_path)

    assert run(Path("in"), Path(out)) == 2

    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    assert [p.name for p in (tmp_path / "in").iterdir()] == ["s.csv"]


def test_a_data_that_is_no_folder_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "one.csv", five_minute_rows(30))

    assert run(tmp_path / "missing", tmp_path / "out") == 2
    assert run(tmp_path / "one.csv", tmp_path / "out") == 2

    err = capsys.readouterr().err
    assert err.count("is no folder: it holds the recordings") == 2


def test_a_file_that_is_not_utf8_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bin.csv").write_bytes(b"\xff\xfe\x00bin")

    assert run(tmp_path / "in", tmp_path / "out") == 2

    err = capsys.readouterr().err
    assert "bin.csv: not UTF-8 (byte b'\\xff' at offset 0)" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["nan", "inf", "abc"])
def test_a_file_of_no_finite_value_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    rows = [(stamp, value) for stamp, _ in five_minute_rows(30)]
    write_csv(tmp_path / "in" / "s.csv", rows)

    assert run(tmp_path / "in", tmp_path / "out") == 2

    assert "none of its 30 values is a finite number" in capsys.readouterr().err
