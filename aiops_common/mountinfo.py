"""The mount table of /proc/<pid>/mountinfo (format in proc(5)), line by line."""

from __future__ import annotations

import re
from typing import NamedTuple

# mountinfo escapes space, tab, newline and backslash in paths as \ooo.
_ESCAPE = re.compile(r"\\([0-7]{3})")


class MountLine(NamedTuple):
    """One mount: `root` is the path within its filesystem shown at `point`."""

    root: str
    point: str
    fstype: str
    options: tuple[str, ...]


def mount_lines(text: str) -> list[MountLine]:
    """Every well-formed line of a mountinfo text, in mount order."""
    mounts = []
    for line in text.splitlines():
        # Optional fields, of any number, end at a lone "-".
        left, dash, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not dash or len(fields) < 5 or len(tail) < 3:
            continue
        mounts.append(
            MountLine(
                _unescape(fields[3]),
                _unescape(fields[4]),
                tail[0],
                tuple(tail[2].split(",")),
            )
        )
    return mounts


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), text)
