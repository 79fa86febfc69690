from __future__ import annotations

import os
from pathlib import Path

import pytest

from aiops_common.whole_file import written_whole


def test_a_block_that_fails_leaves_the_file_and_no_trace(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_text("kept\n")

    with pytest.raises(OSError), written_whole(path) as place:
        place.write_text("half")
        raise OSError(28, "No space left on device")

    assert path.read_text() == "kept\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_new_file_gets_the_mode_open_would_give(tmp_path: Path) -> None:
    umask = os.umask(0o027)
    try:
        with written_whole(tmp_path / "new.csv") as place:
            place.write_text("rows\n")
    finally:
        os.umask(umask)

    assert (tmp_path / "new.csv").stat().st_mode & 0o777 == 0o640


def test_a_device_is_written_in_place() -> None:
    with written_whole(Path(os.devnull)) as place:
        assert place == Path(os.devnull)
        place.write_text("gone\n")

    assert Path(os.devnull).is_char_device()
