"""Puts processes into cgroups the receiver manages; needs a writable cgroupfs.

Works with cgroup v2 (a unified hierarchy where the controller is enabled) and
v1 (one hierarchy per controller). Every path it writes lies under the managed
root `<hierarchy>/<cgroup_name>`; the filesystem root is injected for tests.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alertmanager_webhook.cgroup_records import GroupRecord, GroupRecords, RecordError

# The v1 file each controller is recognised by.
V1_MARKER = {"cpu": "cpu.cfs_quota_us", "memory": "memory.limit_in_bytes"}

# What "no limit" reads as, written back when a cap is lifted.
NEUTRAL = {
    "cpu.max": "max",
    "cpu.cfs_quota_us": "-1",
    "memory.high": "max",
    "memory.soft_limit_in_bytes": "-1",
}
# At or above this, a v1 byte or quota limit file means "no limit".
UNLIMITED_V1 = 2**62


class CgroupError(Exception):
    """A cgroup could not be created, written or removed; says which and why."""


class CgroupUnavailable(CgroupError):
    """No writable hierarchy offers the controller; callers may fall back."""


@dataclass(frozen=True)
class Hierarchy:
    """One mounted hierarchy that offers a controller."""

    version: int
    mount: Path
    controller: str


def group_name(prefix: str, target: str) -> str:
    """A fixed, path-safe cgroup name for a target; label text never reaches it."""
    return f"{prefix}-{hashlib.sha256(target.encode()).hexdigest()[:16]}"


def target_group(target: str) -> str:
    """The one group every cgroup action on `target` shares.

    Under v2 a process sits in one cgroup for all controllers, so a CPU cap
    and a memory mark on the same processes must set their limits on the
    same group, or the second move would take them out of the first's.
    """
    return group_name("target", target)


def _in_force(path: Path) -> bool:
    """Tell whether a limit file holds a limit rather than its "none" value."""
    words = _words(path)
    if not words or words[0] in ("max", "-1"):
        return False
    # v1 reads "no limit" back as the largest page-aligned count, not as -1.
    return not (words[0].isdigit() and int(words[0]) >= UNLIMITED_V1)


class Cgroups:
    """Finds hierarchies, confines processes under the managed root, releases them."""

    def __init__(
        self,
        fs_root: Path | str = "/sys/fs/cgroup",
        managed: str = "aiops-webhook",
        proc_root: Path | str = "/proc",
        rmdir: Callable[[Path], None] = os.rmdir,
        records_dir: Path | str | None = None,
    ) -> None:
        self.fs_root = Path(fs_root)
        self.managed = managed
        self.proc_root = Path(proc_root)
        self._rmdir = rmdir
        # Each group's origins and holders (cgroup_records.py); without a
        # folder, origins live in each action's undo only, and lifting one
        # limit lifts every limit of its kind on the group.
        self.records = GroupRecords(records_dir)

    def find(self, controller: str) -> Hierarchy | None:
        """Return the hierarchy to use for `controller`, v2 first; reads only."""
        for mount in (self.fs_root, self.fs_root / "unified"):
            enabled = _words(mount / "cgroup.subtree_control")
            if controller in _words(mount / "cgroup.controllers") and (
                controller in enabled
            ):
                return Hierarchy(2, mount, controller)

        mount = self.fs_root / controller
        if (mount / V1_MARKER[controller]).exists():
            return Hierarchy(1, mount, controller)
        return None

    def usable(self, controller: str) -> Hierarchy:
        """Return a hierarchy we may write to, or raise CgroupUnavailable."""
        hierarchy = self.find(controller)
        if hierarchy is None:
            raise CgroupUnavailable(f"no cgroup hierarchy offers {controller}")
        root = hierarchy.mount / self.managed
        if not os.access(root if root.exists() else hierarchy.mount, os.W_OK):
            raise CgroupUnavailable(f"cgroup {str(root)!r} is not writable")
        return hierarchy

    def describe(self, hierarchy: Hierarchy, group: str, settings: Mapping) -> str:
        values = " ".join(f"{k}={v!s}" for k, v in settings.items())
        return f"cgroup v{hierarchy.version} {values} in {self.managed}/{group}"

    def confine(
        self, controller: str, group: str, pids: Iterable[int], settings: Mapping
    ) -> dict[str, Any]:
        """Create `group` with `settings` and move `pids` into it; return the undo."""
        hierarchy = self.usable(controller)
        root = hierarchy.mount / self.managed
        path = self._inside(root / group, root)

        key = _record_key(hierarchy, group)
        # A new group's processes came from outside: an older record is stale.
        record = self.records.load(key) if path.is_dir() else GroupRecord()
        holder = record.hold({k: str(v) for k, v in settings.items()})
        try:
            root.mkdir(exist_ok=True)
            if hierarchy.version == 2 and controller not in _words(
                root / "cgroup.subtree_control"
            ):
                _write(root / "cgroup.subtree_control", f"+{controller}")
            path.mkdir(exist_ok=True)
            # The strictest limit of each kind holds while its alert fires.
            for name in settings:
                _write(path / name, str(record.strictest(name)))
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise CgroupUnavailable(f"cannot create {str(path)!r}: {exc}") from exc
            raise CgroupError(f"cannot set up {str(path)!r}: {exc}") from exc

        origins, moved = {}, []
        for pid in pids:
            # Read before moving: the undo has to know where each one came from.
            origins[str(pid)] = self._origin(hierarchy, pid)
            try:
                _write(path / "cgroup.procs", str(pid))
            except ProcessLookupError:
                continue
            except OSError as exc:
                raise CgroupError(
                    f"cannot move pid {pid} into {str(path)!r}: {exc}"
                ) from exc
            moved.append(pid)
        if not moved:
            raise CgroupError("every target process ended before it could be moved")

        # The first origin kept wins: a process already in the group reads
        # as coming from the root (see _origin).
        record.origins = {**origins, **record.origins}
        try:
            self.records.save(key, record)
        except RecordError as exc:
            raise CgroupError(str(exc)) from exc
        return {
            "cgroup": hierarchy.version,
            "controller": controller,
            "group": group,
            "settings": sorted(settings),
            "origins": record.origins,
            "moved": moved,
            "holder": holder,
        }

    def release(self, undo: Mapping[str, Any]) -> str:
        """Lift the undo's limits; the last one lifted moves the processes back.

        The group is removed once no limit is left in it, with every process
        in it moved back to where it came from.
        """
        hierarchy = self.find(str(undo["controller"]))
        if hierarchy is None or hierarchy.version != undo["cgroup"]:
            raise CgroupError(f"the v{undo['cgroup']} hierarchy is gone")
        root = hierarchy.mount / self.managed
        path = self._inside(root / str(undo["group"]), root)
        if not path.is_dir():
            return f"{self.managed}/{undo['group']} was already removed"

        key = _record_key(hierarchy, str(undo["group"]))
        record = self.records.load(key)
        record.let_go(str(undo.get("holder", "")))
        for name in undo["settings"]:
            if name in NEUTRAL:
                # Another action's limit of the same kind stays in force.
                left = record.strictest(name)
                _write_quietly(path / name, NEUTRAL[name] if left is None else left)
        # Another action's limit on the same target holds the group together.
        still = sorted(name for name in NEUTRAL if _in_force(path / name))
        if still:
            try:
                self.records.save(key, record)
            except RecordError as exc:
                raise CgroupError(str(exc)) from exc
            lifted = " ".join(n for n in undo["settings"] if n in NEUTRAL)
            return (
                f"lifted this action's {lifted or 'limit'} in "
                f"{self.managed}/{undo['group']}; the processes stay for "
                f"{' '.join(still)}"
            )

        kept = {**undo["origins"], **record.origins}
        origins = {int(k): str(v) for k, v in kept.items()}
        fallback = next(iter(origins.values()), "/")
        # Children forked while capped are in the group too; they follow a parent.
        members = [int(p) for p in _words(path / "cgroup.procs")]
        for pid in members:
            self._move_back(hierarchy, pid, origins.get(pid, fallback))

        try:
            self._rmdir(path)
        except OSError as exc:
            raise CgroupError(f"cannot remove {str(path)!r}: {exc}") from exc
        self.records.forget(key)
        return (
            f"moved {len(members)} process(es) back and removed "
            f"{self.managed}/{undo['group']}"
        )

    def _move_back(self, hierarchy: Hierarchy, pid: int, origin: str) -> None:
        try:
            dest = self._inside(hierarchy.mount / origin.lstrip("/"), hierarchy.mount)
        except CgroupError:
            dest = hierarchy.mount
        for candidate in (dest, hierarchy.mount):
            try:
                _write(candidate / "cgroup.procs", str(pid))
                return
            except ProcessLookupError:
                return
            except OSError:
                continue  # the original cgroup may be gone; the root always exists
        raise CgroupError(f"cannot move pid {pid} out of the managed cgroup")

    def _origin(self, hierarchy: Hierarchy, pid: int) -> str:
        try:
            lines = (self.proc_root / str(pid) / "cgroup").read_text().splitlines()
        except OSError:
            return "/"
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if (hierarchy.version == 2 and controllers == "") or (
                hierarchy.version == 1
                and hierarchy.controller in controllers.split(",")
            ):
                # Already ours (a crash hid an earlier move): the root is the origin.
                if path == f"/{self.managed}" or path.startswith(f"/{self.managed}/"):
                    return "/"
                return path
        return "/"

    def _inside(self, path: Path, root: Path) -> Path:
        resolved = Path(os.path.realpath(path))
        base = Path(os.path.realpath(root))
        if resolved != base and base not in resolved.parents:
            raise CgroupError(f"{str(path)!r} is outside {str(root)!r}")
        return resolved


def _words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _write(path: Path, value: str) -> None:
    # One value per write(): the kernel takes a single pid per write on cgroup.procs.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _record_key(hierarchy: Hierarchy, group: str) -> str:
    # v1 has one group of this name per controller, each with its record.
    where = "v2" if hierarchy.version == 2 else f"v1-{hierarchy.controller}"
    return f"{group}.{where}"


def _write_quietly(path: Path, value: str) -> None:
    try:
        _write(path, value)
    except OSError:
        pass  # the group is about to be removed; its limits go with it
