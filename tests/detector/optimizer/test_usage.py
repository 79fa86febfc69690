from __future__ import annotations

from pathlib import Path

import pytest

from detector.optimizer.resources import RECORDED
from detector.optimizer.usage import UsageFileError, load_usage

MEMORY_UTIL = RECORDED["pod_memory_util"]


def write(tmp_path: Path, text: str, name: str = "usage.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_reading_at_the_full_size_is_kept(tmp_path: Path) -> None:
    # Rounding in the exporter can put a full reading a hair above 1.
    path = write(tmp_path, "timestamp,container,value\n0,c1,1.0\n57,c1,1.0000001\n")

    usage = load_usage(path, MEMORY_UTIL)

    assert usage["c1"][1].tolist() == [1.0, 1.0000001]


def test_a_reading_above_the_full_size_names_its_series(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,container,value\n0,c1,0.4\n0,c2,40\n")

    with pytest.raises(UsageFileError, match=r"up to 40\.0 \(series 'c2'\)"):
        load_usage(path, MEMORY_UTIL)
