import signal
import tempfile
from pathlib import Path

import pytest

from aiops_cli.datasets import DatasetError, inject_stuck, load_nab, load_pod_series
from aiops_cli.scenario import NAB_SERIES, build_tracks

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data")


@needs_data
def test_nab_windows_are_row_ranges_inside_the_labels():
    series = load_nab(DATA / "nab", NAB_SERIES)

    assert len(series.values) == 22695
    assert len(series.windows) == 4
    first, last = series.windows[0]
    # labels.json: 2013-12-10 06:25 .. 2013-12-12 05:35 at a 5-minute step
    assert last - first == (47 * 60 + 10) // 5


@needs_data
def test_the_demo_replays_labelled_windows_live():
    nab, pod = build_tracks(DATA / "nab", DATA / "alibaba-genai", live_seconds=200)

    assert len(nab.live_windows()) == 2
    assert len(pod.live_windows()) == 1
    start, end = pod.live_windows()[0]
    assert set(pod.series.values[start : end + 1]) == {1.0}
    for track in (nab, pod):
        replay_seconds = (track.live_to - track.live_from) * track.step_ms / 1000
        assert 150 <= replay_seconds <= 200


def test_missing_column_is_named(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("time,value\n1,2\n")
    (tmp_path / "labels.json").write_text('{"x.csv": []}')

    with pytest.raises(DatasetError, match="lacks column 'timestamp'"):
        load_nab(tmp_path, "x.csv")


def test_bad_number_is_named(tmp_path):
    path = tmp_path / "pods.csv"
    path.write_text("timestamp,container,value\n1,a,oops\n")

    with pytest.raises(DatasetError, match="'oops'"):
        load_pod_series(path)


def test_nab_checkout_labels_are_found(tmp_path):
    (tmp_path / "data" / "k").mkdir(parents=True)
    (tmp_path / "data" / "k" / "s.csv").write_text(
        "timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,2\n"
    )
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(
        '{"k/s.csv": [["2020-01-01 00:05:00.000000", "2020-01-01 00:10:00.000000"]]}'
    )

    assert load_nab(tmp_path, "k/s.csv").windows == ((1, 1),)


def test_stuck_fault_is_labelled_and_bounded(tmp_path):
    path = tmp_path / "pods.csv"
    path.write_text(
        "timestamp,container,value\n" + "".join(f"{t},a,{t % 7}\n" for t in range(10))
    )
    series = load_pod_series(path)

    faulty = inject_stuck(series, start=4, length=3, value=100.0)

    assert faulty.values[3:8] == (3.0, 100.0, 100.0, 100.0, 0.0)
    assert faulty.windows == ((4, 6),)
    with pytest.raises(ValueError, match="outside 10 rows"):
        inject_stuck(series, start=8, length=3, value=1.0)


def test_the_demo_without_its_data_is_bad_input(tmp_path, capsys, monkeypatch):
    from aiops_cli.main import main

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    # The demo takes SIGTERM and SIGHUP over; give them back to pytest.
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with pytest.raises(SystemExit) as exited:
            main(["demo", "--nab", str(tmp_path / "nab"), "--alibaba", str(tmp_path)])
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)

    assert exited.value.code == 2
    assert "aiops demo: cannot read" in capsys.readouterr().err
    assert list(scratch.iterdir()) == []  # no run folder left behind


@pytest.mark.parametrize("seconds", ["-5", "0", "nan", "inf", "soon"])
def test_the_demo_refuses_a_live_replay_that_cannot_run(seconds, capsys):
    from aiops_cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["demo", "--live-seconds", seconds])

    assert exited.value.code == 2
    assert "--live-seconds" in capsys.readouterr().err


def test_the_demo_refuses_a_run_folder_a_previous_run_left(tmp_path, capsys):
    from aiops_cli.main import main

    (tmp_path / "webhook.db").write_text("")
    # No data there: were the folder taken, the demo would stop at once.
    no_data = tmp_path / "no-data"

    with pytest.raises(SystemExit) as exited:
        main(["demo", "--data", str(no_data), "--run-dir", str(tmp_path)])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--run-dir" in err and "not empty" in err
