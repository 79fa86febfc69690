"""Where the cpu and memory controllers' cgroup trees are mounted, from the
mount table in /proc/self/mountinfo (format in proc(5)), and which of a
process's /proc/<pid>/cgroup paths each controller uses."""

from __future__ import annotations

from typing import NamedTuple

from aiops_common.mountinfo import mount_lines

CONTROLLERS = ("cpu", "memory")


class Mount(NamedTuple):
    """One mounted cgroup hierarchy; `root` is the cgroup shown at `directory`."""

    version: int
    directory: str
    root: str


def parse_mountinfo(text: str) -> dict[str, Mount]:
    """The mount of each controller in CONTROLLERS found in a mountinfo text."""
    v1: dict[str, Mount] = {}
    v2: Mount | None = None
    for root, directory, fstype, options in mount_lines(text):
        # A hierarchy mounted twice (a bind mount into a container) is best
        # used where its whole tree is visible.
        if fstype == "cgroup2" and _better(root, v2):
            v2 = Mount(2, directory, root)
        elif fstype == "cgroup":
            for controller in CONTROLLERS:
                if controller in options and _better(root, v1.get(controller)):
                    v1[controller] = Mount(1, directory, root)

    # A controller is bound to one hierarchy at a time: on hybrid hosts the v1
    # one holds it and the v2 tree (often at .../unified) has none.
    mounts = dict(v1)
    if v2 is not None:
        for controller in CONTROLLERS:
            mounts.setdefault(controller, v2)
    return mounts


def controller_paths(text: str, mounts: dict[str, Mount]) -> tuple[str | None, ...]:
    """Each controller's cgroup path in a /proc/<pid>/cgroup, in CONTROLLERS order."""
    v2 = None
    v1: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        else:
            for controller in parts[1].split(","):
                v1[controller] = parts[2]

    paths: list[str | None] = []
    for controller in CONTROLLERS:
        mount = mounts.get(controller)
        if mount is None:
            paths.append(None)
        else:
            paths.append(v2 if mount.version == 2 else v1.get(controller))
    return tuple(paths)


def directory_of(path: str, mount: Mount) -> str | None:
    """The directory of cgroup `path` under `mount`, None where it is not visible.

    Paths are relative to the reader's cgroup namespace; one outside it shows
    as "/../.." and cannot be reached through this mount.
    """
    # TODO: an exporter in a private cgroup namespace (containers' default under
    # cgroup v2) sees other containers' paths that way and reports no limits
    # for them. Docker's `cgroup: host` avoids it; Kubernetes has no such
    # setting, so the fix there is a host mount of the cgroup tree and
    # resolving "/.." from our own cgroup's place in it.
    if ".." in path.split("/"):
        return None
    root = mount.root.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        return None
    return (mount.directory.rstrip("/") + path[len(root) :]).rstrip("/") or "/"


def _better(root: str, known: Mount | None) -> bool:
    return known is None or (root == "/" and known.root != "/")
