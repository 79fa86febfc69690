"""The state directory is made when missing and refused when it cannot be one."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.store import ModelStore, StoreError


def test_a_missing_state_dir_is_made(tmp_path: Path) -> None:
    ModelStore(tmp_path / "a" / "b")

    assert (tmp_path / "a" / "b").is_dir()


def test_a_file_in_the_way_is_named_not_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "detector.yml"
    path.write_text("queries: []\n")

    with pytest.raises(StoreError, match="is not a directory"):
        ModelStore(path)
