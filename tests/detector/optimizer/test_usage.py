from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from detector.optimizer.resources import RECORDED
from detector.optimizer.usage import (
    EMPTY_ID,
    NEGATIVE,
    NOT_FINITE,
    REPEATED,
    UsageFileError,
    load_usage,
)

MEMORY_UTIL = RECORDED["pod_memory_util"]
HEAD = "timestamp,container,value\n"
ROWS = "".join(f"{57 * k},c1,0.5\n" for k in range(40))
# A gzip header, then a deflate block of the reserved type 3.
BAD_DEFLATE = bytes.fromhex("1f8b0800000000000003") + b"\x07" + bytes(16)


def write(tmp_path: Path, text: str, name: str = "usage.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_reading_at_the_full_size_is_kept(tmp_path: Path) -> None:
    # Rounding in the exporter can put a full reading a hair above 1.
    path = write(tmp_path, "timestamp,container,value\n0,c1,1.0\n57,c1,1.0000001\n")

    usage = load_usage(path, MEMORY_UTIL)

    assert usage.series["c1"][1].tolist() == [1.0, 1.0000001]


def test_a_reading_above_the_full_size_names_its_series(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,container,value\n0,c1,0.4\n0,c2,40\n")

    with pytest.raises(UsageFileError, match=r"up to 40\.0 \(series 'c2'\)"):
        load_usage(path, MEMORY_UTIL)


@pytest.mark.parametrize("absurd", ["1e300", "1.7e308"])
def test_bytes_no_memory_reaches_are_refused(tmp_path: Path, absurd: str) -> None:
    # Bytes have no full size; sized, such a reading was allocated inf.
    path = write(tmp_path, f"timestamp,container,value\n0,c1,4e9\n0,c2,{absurd}\n")

    with pytest.raises(UsageFileError, match=r"series 'c2'.*largest plausible"):
        load_usage(path, RECORDED["pod_gpu_memory_used_bytes"])


@pytest.mark.parametrize(
    "far", ["1e20", "1662869520000", "0"], ids=["1e20", "in ms", "at 0"]
)
def test_a_timestamp_far_from_the_others_is_refused_by_its_line(
    tmp_path: Path, far: str
) -> None:
    rows = "".join(f"{1_662_858_720 + 57 * k},c{k % 2},0.5\n" for k in range(40))
    path = write(tmp_path, HEAD + rows + f"{far},c1,0.5\n" + rows)

    with pytest.raises(UsageFileError) as caught:
        load_usage(path, MEMORY_UTIL)

    assert str(caught.value).startswith(
        f"{path}: line 42: timestamp {float(far)!r} (series 'c1') is a year or "
        "more from the other rows, which run from 1662858720.0 to 1662860943.0"
    )


def test_a_trace_longer_than_a_year_without_a_year_long_pause_is_kept(
    tmp_path: Path,
) -> None:
    # Hourly for 400 days: the trace spans more than a year, no gap does.
    rows = "".join(f"{1_600_000_000 + 3600 * k},c1,0.5\n" for k in range(9600))

    usage = load_usage(write(tmp_path, HEAD + rows), MEMORY_UTIL)

    assert usage.series["c1"][0].size == 9600


def test_a_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "usage.csv"
    path.write_bytes((HEAD + ROWS).encode() + b"2280,caf\xe9,0.5\n")

    with pytest.raises(UsageFileError, match=r"usage\.csv: line 42: not UTF-8"):
        load_usage(path, MEMORY_UTIL)


@pytest.mark.parametrize(
    "damage",
    [
        lambda whole: BAD_DEFLATE,
        lambda whole: whole[: len(whole) // 2],
        lambda whole: whole[:-8] + bytes(8),
    ],
    ids=["bad deflate", "cut", "bad checksum"],
)
def test_a_damaged_gzip_file_is_refused_with_its_name(tmp_path: Path, damage) -> None:
    path = tmp_path / "usage.csv.gz"
    path.write_bytes(damage(gzip.compress((HEAD + ROWS * 50).encode(), mtime=0)))

    with pytest.raises(UsageFileError, match=r"cannot read '.*usage\.csv\.gz'"):
        load_usage(path, MEMORY_UTIL)


def test_a_field_over_the_csv_limit_is_named_by_line(tmp_path: Path) -> None:
    # An unclosed quote runs to the end of the file.
    path = write(tmp_path, HEAD + ROWS + '2280,c1,"0.5\n' + ROWS * 5000)

    with pytest.raises(UsageFileError, match="line 42: field larger than field"):
        load_usage(path, MEMORY_UTIL)


@pytest.mark.parametrize(
    "row, message",
    [
        ("2280,c1", r"line 42: no 'value' \(field 3\): the row ends at field 2"),
        ("2280", r"line 42: no 'container' \(field 2\)"),
        ("", r"line 42: no 'timestamp' \(field 1\): the line is empty"),
    ],
    ids=["no reading", "no series id", "empty line"],
)
def test_a_short_row_names_the_missing_column(
    tmp_path: Path, row: str, message: str
) -> None:
    path = write(tmp_path, HEAD + ROWS + row + "\n" + ROWS)

    with pytest.raises(UsageFileError, match=message):
        load_usage(path, MEMORY_UTIL)


def test_a_byte_order_mark_is_no_part_of_the_header(tmp_path: Path) -> None:
    path = tmp_path / "usage.csv.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + (HEAD + ROWS).encode()))

    usage = load_usage(path, MEMORY_UTIL)

    assert list(usage.series) == ["c1"]


def test_a_column_named_twice_is_refused(tmp_path: Path) -> None:
    # Read as a dict, the last of the two would win without a word.
    path = write(tmp_path, "timestamp,container,value,value\n0,c1,0.5,0.9\n")

    with pytest.raises(UsageFileError, match=r"column 'value' appears 2 times"):
        load_usage(path, MEMORY_UTIL)


def test_a_nul_byte_in_a_series_id_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + ROWS + "2280,c1\0,0.5\n")

    with pytest.raises(UsageFileError, match=r"line 42: a NUL byte in container"):
        load_usage(path, MEMORY_UTIL)


def test_the_loading_rules_count_what_they_drop(tmp_path: Path) -> None:
    rows = ["0,c1,0.5", "57,,0.5", "57,c1,nan", "114,c1,-1e-5", "0,c1,0.7", "9,,1"]
    path = write(tmp_path, HEAD + "\n".join(rows) + "\n")

    usage = load_usage(path, MEMORY_UTIL)

    assert usage.series["c1"][1].tolist() == [0.7, 0.0]
    assert usage.dropped == {
        EMPTY_ID: 2,
        NOT_FINITE: 1,
        NEGATIVE: 1,
        REPEATED: 1,
    }
    assert usage.notes().startswith("2 rows with an empty series id, 1 rows with")


def test_a_clean_file_drops_nothing(tmp_path: Path) -> None:
    usage = load_usage(write(tmp_path, HEAD + ROWS), MEMORY_UTIL)

    assert usage.dropped == {} and usage.notes() == ""


def test_a_file_all_in_milliseconds_is_refused(tmp_path: Path) -> None:
    # Consistent with itself, so no timestamp stands a year from the others.
    rows = "".join(f"{57_000 * k},c1,0.5\n" for k in range(40))
    path = write(tmp_path, HEAD + rows)

    with pytest.raises(UsageFileError, match=r"a median 57000 s apart.*milliseconds"):
        load_usage(path, MEMORY_UTIL)


def test_an_hourly_scrape_is_no_other_unit(tmp_path: Path) -> None:
    rows = "".join(f"{3600 * k},c1,0.5\n" for k in range(40))

    usage = load_usage(write(tmp_path, HEAD + rows), MEMORY_UTIL)

    assert usage.series["c1"][0].size == 40


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2280,c1,\n", "line 42: value '' is not a number"),
        ("soon,c1,0.5\n", "line 42: timestamp 'soon' is not a number"),
    ],
)
def test_a_field_that_is_no_number_is_named_by_column(
    tmp_path: Path, row: str, message: str
) -> None:
    path = write(tmp_path, HEAD + ROWS + row)

    with pytest.raises(UsageFileError, match=message):
        load_usage(path, MEMORY_UTIL)
