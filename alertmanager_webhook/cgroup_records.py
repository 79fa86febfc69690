"""What the receiver keeps about each cgroup it manages, in a folder it owns.

Every limit put on a target shares the target's one cgroup (see
cgroups.target_group). Its record keeps where the processes came from before
the first limit, and which limits hold the group with what values, so that
lifting one limit leaves the others in force and the last one lifted moves
the processes back where they came from.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path


class RecordError(Exception):
    """A record could not be written; says which and why."""


@dataclass
class GroupRecord:
    """Origins by pid, and the settings each holder asked for, oldest first."""

    origins: dict[str, str] = field(default_factory=dict)
    holders: dict[str, dict[str, str]] = field(default_factory=dict)

    def hold(self, settings: dict[str, str]) -> str:
        """Add a holder of `settings`; return its id, for the undo."""
        holder = uuid.uuid4().hex
        self.holders[holder] = dict(settings)
        return holder

    def let_go(self, holder: str) -> None:
        self.holders.pop(holder, None)

    def strictest(self, name: str) -> str | None:
        """The lowest limit the holders set on `name`; None if none holds it.

        Limits read as a leading number (`cpu.max` is "quota period"); one
        that does not is taken as the newest holder left it.
        """
        values = [s[name] for s in self.holders.values() if name in s]
        if not values:
            return None
        numbers = [_leading_number(v) for v in values]
        if None in numbers:
            return values[-1]
        return values[numbers.index(min(n for n in numbers if n is not None))]


def _leading_number(value: str) -> int | None:
    words = value.split()
    return int(words[0]) if words and words[0].isdigit() else None


class GroupRecords:
    """Reads and writes one JSON file per group; without a folder, keeps nothing."""

    def __init__(self, folder: Path | str | None) -> None:
        self.folder = None if folder is None else Path(folder)

    def load(self, key: str) -> GroupRecord:
        if self.folder is None:
            return GroupRecord()
        try:
            raw = json.loads((self.folder / f"{key}.json").read_text())
            return GroupRecord(
                {str(k): str(v) for k, v in raw["origins"].items()},
                {
                    str(h): {str(k): str(v) for k, v in s.items()}
                    for h, s in raw["holders"].items()
                },
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            # Missing or unreadable: the undo's own origins are the fallback.
            return GroupRecord()

    def save(self, key: str, record: GroupRecord) -> None:
        if self.folder is None:
            return
        path = self.folder / f"{key}.json"
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            # Holders stay in the order they came, for strictest()'s ties.
            temporary.write_text(
                json.dumps({"origins": record.origins, "holders": record.holders})
            )
            temporary.replace(path)
        except OSError as exc:
            raise RecordError(f"cannot write {str(path)!r}: {exc}") from exc

    def forget(self, key: str) -> None:
        if self.folder is not None:
            (self.folder / f"{key}.json").unlink(missing_ok=True)
