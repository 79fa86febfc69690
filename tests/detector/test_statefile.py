from __future__ import annotations

import io
import json
import os
import pickle
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from detector import statefile
from detector.model import RobustModel
from detector.statefile import StateFileError

END_MARK = pickle.dumps(None, protocol=pickle.HIGHEST_PROTOCOL)


def accept_all(header: dict) -> None:
    pass


def trained_model() -> RobustModel:
    model = RobustModel(window=20, min_points=5, threshold=6.0)
    model.update(np.linspace(1.0, 2.0, 30))
    return model


def test_round_trip_keeps_header_records_and_model_state(tmp_path: Path) -> None:
    path = tmp_path / "state"
    model = trained_model()

    size = statefile.write(path, {"note": "x"}, [("a", model), ("b", None, 3)])
    header, records = statefile.read(path, accept_all)

    assert size == path.stat().st_size
    assert header["note"] == "x" and header["format"] == statefile.FORMAT_VERSION
    (name, restored), rest = records[0], records[1:]
    assert name == "a" and rest == [("b", None, 3)]
    assert restored.points_seen == 30
    assert restored.update([2.5]) == model.update([2.5])


def test_written_file_is_private_and_no_temporary_is_left(tmp_path: Path) -> None:
    path = tmp_path / "state"
    # A temporary file left by a crash is replaced, not appended to.
    (tmp_path / "state.tmp").write_bytes(b"stale")

    statefile.write(path, {}, [1])

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "state"
    statefile.write(path, {}, ["old"])

    with pytest.raises(TypeError):
        statefile.write(path, {}, ["new", threading.Lock()])

    assert statefile.read(path, accept_all)[1] == ["old"]
    assert not (tmp_path / "state.tmp").exists()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: b"garbage" + data, "not a detector state file"),
        (lambda data: data[: len(statefile.MAGIC) + 5], "header cut short"),
        (lambda data: data[:-40], "record 1 unreadable.*truncated"),
        (lambda data: data[: -len(END_MARK)], "cut short after 2 records"),
        (
            lambda data: data.replace(b'"format": 1', b'"format": 2'),
            "format 2, this detector reads format 1",
        ),
        (lambda data: data.replace(b'{"code"', b'["code"'), "header is not JSON"),
    ],
)
def test_damaged_or_newer_files_are_refused_with_the_reason(
    tmp_path: Path, damage, reason: str
) -> None:
    path = tmp_path / "state"
    statefile.write(path, {}, ["first", np.arange(50.0)])
    path.write_bytes(damage(path.read_bytes()))

    with pytest.raises(StateFileError, match=reason):
        statefile.read(path, accept_all)


def test_files_others_could_have_written_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "state"
    statefile.write(path, {}, [1])

    with pytest.raises(StateFileError, match=r"owned by uid \d+, not by this user"):
        statefile.read(path, accept_all, owner=os.geteuid() + 1)

    path.chmod(0o620)
    with pytest.raises(StateFileError, match="writable by group or others"):
        statefile.read(path, accept_all)

    path.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(StateFileError, match="cannot open"):
        statefile.read(link, accept_all)


def test_accept_can_stop_before_any_record_is_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "state"
    statefile.write(path, {"keep": False}, [1])

    def refuse(header: dict) -> None:
        if not header["keep"]:
            raise StateFileError("not wanted")

    with pytest.raises(StateFileError, match="not wanted"):
        statefile.read(path, refuse)


def forged(path: Path, payload: bytes, code: dict[str, str] | None = None) -> None:
    """A file with a sound header around `payload`, as if written by someone else."""
    header = {"format": statefile.FORMAT_VERSION, "code": code or {}}
    out = io.BytesIO()
    out.write(statefile.MAGIC + json.dumps(header).encode() + b"\n" + payload)
    pickle.dump(None, out)
    path.write_bytes(out.getvalue())
    path.chmod(0o600)


def test_records_may_name_only_detector_classes_and_numpy_basics(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state"
    forged(path, pickle.dumps(os.getcwd))
    with pytest.raises(
        StateFileError, match="names posix.getcwd, which is not allowed"
    ):
        statefile.read(path, accept_all)

    code = {"detector.statefile": statefile.module_digest("detector.statefile")}
    forged(path, pickle.dumps(statefile.read), code)
    with pytest.raises(StateFileError, match="statefile.read, which is not a class"):
        statefile.read(path, accept_all)


def test_records_of_changed_code_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "state"
    statefile.write(path, {}, [trained_model()])
    data = path.read_bytes()
    digest = statefile.module_digest("detector.model").encode()
    path.write_bytes(data.replace(digest, b"0" * len(digest)))

    with pytest.raises(StateFileError, match="code of detector.model changed"):
        statefile.read(path, accept_all)


def test_many_records_of_one_shape_read_back_each_as_written(tmp_path: Path) -> None:
    # Records share class names and strings; each must resolve its own.
    path = tmp_path / "state"
    models = [trained_model() for _ in range(5)]
    for i, model in enumerate(models):
        model.update([float(i)] * (i + 1))

    statefile.write(path, {}, [("series", i, m) for i, m in enumerate(models)])
    _, records = statefile.read(path, accept_all)

    assert [(r[0], r[1]) for r in records] == [("series", i) for i in range(5)]
    for (_, _, restored), model in zip(records, models, strict=True):
        assert restored.points_seen == model.points_seen
        assert (restored.history() == model.history()).all()
