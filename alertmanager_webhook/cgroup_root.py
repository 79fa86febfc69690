"""Checks that a configured cgroup_root can hold the receiver's cgroups.

Reads the mount table, /proc/self/mountinfo; where the system has none, only
that the path exists is checked.
"""

from __future__ import annotations

import os
from pathlib import Path

from aiops_common.config import check
from aiops_common.mountinfo import mount_lines

DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"
MOUNTINFO = Path("/proc/self/mountinfo")
CGROUP_FILESYSTEMS = ("cgroup", "cgroup2")


def check_cgroup_root(path: str, mountinfo: Path = MOUNTINFO) -> None:
    """Raise ConfigError unless `path` can hold the receiver's cgroups.

    That is a path on a cgroup filesystem, or a folder with cgroup mounts right
    below it, as v1 has (one per controller, under a tmpfs). A path that does
    not exist is a typo: caps would quietly fall back to renice. A system
    without a mount table cannot be checked.
    """
    check(
        os.path.exists(path),
        "cgroup_root",
        f"{path!r} does not exist; caps need a cgroup filesystem, such as "
        f"{DEFAULT_CGROUP_ROOT}",
    )

    try:
        table = mountinfo.read_text()
    except OSError:
        return

    real = os.path.realpath(path)
    mounts = [(m.point, m.fstype) for m in mount_lines(table)]
    below = any(
        kind in CGROUP_FILESYSTEMS and os.path.dirname(point) == real
        for point, kind in mounts
    )
    check(
        below or _filesystem(real, mounts) in CGROUP_FILESYSTEMS,
        "cgroup_root",
        f"{path!r} is not a cgroup filesystem, nor a folder of cgroup mounts "
        f"(see {mountinfo}); caps need one, such as {DEFAULT_CGROUP_ROOT}",
    )


def _filesystem(path: str, mounts: list[tuple[str, str]]) -> str:
    """The type of the filesystem `path` lies on.

    That of the deepest mount point above it; of several on one point, the
    last mounted, which hides the others.
    """
    kind, depth = "", -1
    for point, mounted in mounts:
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= depth:
            kind, depth = mounted, len(point)
    return kind
