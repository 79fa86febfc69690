"""The audit chain's head, kept in a file beside the database.

Records cut from the end of the chain, together with SQLite's sequence row,
leave a shorter chain that is intact in itself; the head file remembers how
long the chain was and what its last hash was. Needs a writable directory.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from alertmanager_webhook.siblings import beside

SUFFIX = ".audit-head"
# Room for the JSON of any head: a 64-digit hash and a record count.
RECORD_BYTES = 128


class HeadError(Exception):
    """The head file is missing or unreadable; says which and why."""


@dataclass(frozen=True)
class Head:
    """How many records the chain held, and the hash of the last one."""

    records: int
    hash: str


class HeadFile:
    """Reads and overwrites `<database>.audit-head`, one fixed-length record.

    Overwritten in place rather than renamed over: a rename costs as much as
    an fsync on ext4, and one small write() cannot be half done by a killed
    process. A power cut may still tear it, which verify reports as damage.
    """

    def __init__(self, database: str, fsync: bool = False) -> None:
        self.path = Path(beside(database, SUFFIX))
        # With fsync the head is on disk before the commit is answered, as the
        # commit itself is under synchronous=FULL.
        self._fsync = fsync
        self._fd: int | None = None
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self.path.is_file()

    def write(self, head: Head) -> None:
        text = json.dumps({"records": head.records, "hash": head.hash})
        # Padded to one length, so that a shorter head leaves no old bytes behind.
        record = text.encode().ljust(RECORD_BYTES - 1) + b"\n"
        with self._lock:
            if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
                # Removed under the receiver: writing on would vanish with
                # the descriptor, so make the file anew.
                os.close(self._fd)
                self._fd = None
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            os.pwrite(self._fd, record, 0)
            if self._fsync:
                os.fdatasync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def read(self) -> Head:
        try:
            text = self.path.read_text()
        except FileNotFoundError as exc:
            raise HeadError(
                f"head file {str(self.path)!r} is missing: a cut tail cannot be "
                "ruled out"
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise HeadError(f"cannot read head file {str(self.path)!r}: {exc}") from exc

        try:
            raw = json.loads(text)
            head = Head(int(raw["records"]), str(raw["hash"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise HeadError(
                f"head file {str(self.path)!r} is damaged or truncated: {text[:80]!r}"
            ) from exc
        if head.records < 0 or len(head.hash) != 64:
            raise HeadError(f"head file {str(self.path)!r} holds {text[:80]!r}")
        return head
