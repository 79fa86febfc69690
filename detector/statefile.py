"""The detector's own state file: a magic line, a JSON header, pickled records.

Pickle is acceptable here because the file is the detector's own: written with
mode 0600 into its state directory and renamed into place, and read back only
when this user owns it and nobody else can write to it. What it trusts is that
user; records may name only unchanged detector classes and numpy's basics.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import stat
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

# Bump when the framing or the records' layout changes; an older detector then
# refuses the file instead of misreading it.
FORMAT_VERSION = 1
MAGIC = b"aiops-detector-state\n"

# The header holds names, fingerprints and cursors: kilobytes, not megabytes.
MAX_HEADER_BYTES = 1 << 20

# The only globals a record may name besides classes of the detector package:
# what numpy arrays, numpy scalars and a deque pickle to.
_ALLOWED = {
    ("collections", "deque"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
}


class StateFileError(Exception):
    """A state file that cannot be used; the message says why."""


def write(path: Path, header: Mapping[str, Any], records: Iterable[object]) -> int:
    """Write `header` and every record atomically; return the file's size."""
    temporary = path.with_name(path.name + ".tmp")
    # A temporary file left by a crash is ours and stale.
    temporary.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(MAGIC)
            full = {**header, "format": FORMAT_VERSION, "code": code_digests()}
            out.write(json.dumps(full, sort_keys=True).encode() + b"\n")
            for record in records:
                pickle.dump(record, out, protocol=pickle.HIGHEST_PROTOCOL)
            # The end mark tells a complete file from one cut short.
            pickle.dump(None, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
            os.fsync(out.fileno())
            size = out.tell()
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return size


def read(
    path: Path,
    accept: Callable[[dict[str, Any]], None],
    owner: int | None = None,
) -> tuple[dict[str, Any], list[object]]:
    """The header and records of a trusted file.

    `accept` sees the header before any record is unpickled and raises
    StateFileError to stop there. `owner` is the uid the file must belong to,
    this process' effective uid by default. FileNotFoundError passes through.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StateFileError(f"cannot open: {exc}") from exc

    with os.fdopen(fd, "rb") as source:
        # fstat on the open file: what was checked is what is read.
        _check_trusted(
            os.fstat(source.fileno()), os.geteuid() if owner is None else owner
        )
        header = _read_header(source)
        accept(header)
        records = _read_records(source, header.get("code"))
    return header, records


def code_digests() -> dict[str, str]:
    """SHA-256 of the source of every loaded module of the detector package."""
    return {
        name: module_digest(name)
        for name, module in sorted(sys.modules.items())
        if name.split(".")[0] == "detector" and getattr(module, "__file__", None)
    }


@cache
def module_digest(name: str) -> str:
    # The code does not change while the process runs, so once is enough.
    module = sys.modules.get(name)
    source = getattr(module, "__file__", None)
    if not source:
        return ""
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


def _check_trusted(info: os.stat_result, owner: int) -> None:
    # Unpickling runs code named by the file, so the file must be one that only
    # this user could have written: its own, in its own state directory.
    if not stat.S_ISREG(info.st_mode):
        raise StateFileError("not a regular file")
    if info.st_uid != owner:
        raise StateFileError(f"owned by uid {info.st_uid}, not by this user ({owner})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(info.st_mode)
        raise StateFileError(f"writable by group or others (mode {mode:o})")


def _read_header(source: BinaryIO) -> dict[str, Any]:
    if source.read(len(MAGIC)) != MAGIC:
        raise StateFileError("not a detector state file")
    line = source.readline(MAX_HEADER_BYTES)
    if not line.endswith(b"\n"):
        raise StateFileError("header cut short or too long")
    try:
        header = json.loads(line)
    except ValueError as exc:
        raise StateFileError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise StateFileError(f"header is {type(header).__name__}, not an object")

    version = header.get("format")
    if version != FORMAT_VERSION:
        raise StateFileError(
            f"format {version!r}, this detector reads format {FORMAT_VERSION}"
        )
    return header


def _read_records(source: BinaryIO, code: object) -> list[object]:
    digests = code if isinstance(code, dict) else {}
    records: list[object] = []
    try:
        # One unpickler per record: each was pickled with a memo of its own.
        while (record := _TrustedUnpickler(source, digests).load()) is not None:
            records.append(record)
    except StateFileError:
        raise
    except EOFError as exc:
        raise StateFileError(f"cut short after {len(records)} records") from exc
    # Unpickling a damaged stream can raise nearly anything; all of it means
    # the same here: this file cannot be used.
    except Exception as exc:
        raise StateFileError(f"record {len(records)} unreadable: {exc!r}") from exc
    return records


class _TrustedUnpickler(pickle.Unpickler):
    """Resolves only detector classes of unchanged source, and numpy's basics.

    The ownership check is what makes unpickling acceptable; this narrows what
    a damaged file can reach, and refuses objects whose class code changed
    since they were written, as their attributes may no longer match it.
    """

    def __init__(self, source: BinaryIO | io.BufferedReader, code: dict) -> None:
        super().__init__(source)
        self._code = code

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module.split(".")[0] == "numpy" and name.startswith(("float", "int")):
            return super().find_class(module, name)
        if module.split(".")[0] != "detector":
            raise StateFileError(f"record names {module}.{name}, which is not allowed")

        found = super().find_class(module, name)
        if not isinstance(found, type):
            raise StateFileError(f"record names {module}.{name}, which is not a class")
        if self._code.get(module) != module_digest(module):
            raise StateFileError(f"code of {module} changed since the file was written")
        return found
