"""Writes cgroup v1 or v2 hierarchies under a test directory, with the mount
table that names them, in the formats the Linux kernel writes them."""

from __future__ import annotations

from pathlib import Path

# The v1 "no limit" of memory.limit_in_bytes on 4 KiB pages: the largest page
# counter (2**63 - 1 rounded down to a page) as the kernel prints it.
V1_NO_MEMORY_LIMIT = "9223372036854771712"

V2_MEMORY_EVENTS = "low 0\nhigh {high}\nmax {max}\noom {oom}\noom_kill {oom_kill}\n"
V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill {oom_kill}\n"


class CgroupTree:
    """Mounted hierarchies under `root`; `proc` gets the self/mountinfo naming them.

    version 2: one unified tree. version 1: cpu,cpuacct and memory hierarchies,
    plus the controller-less v2 tree of a hybrid host.
    """

    def __init__(self, root: Path, proc: Path, version: int) -> None:
        self.root = root
        self.version = version
        if version == 2:
            lines = [f"35 24 0:30 / {root}/unified rw,nosuid - cgroup2 cgroup2 rw"]
        else:
            lines = [
                f"31 23 0:28 / {root} rw - tmpfs tmpfs rw,mode=755",
                f"32 31 0:29 / {root}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
                f"35 31 0:32 / {root}/memory rw - cgroup cgroup rw,memory",
                f"41 31 0:38 / {root}/unified rw - cgroup2 cgroup2 rw",
            ]
        (proc / "self").mkdir(parents=True, exist_ok=True)
        (proc / "self" / "mountinfo").write_text("\n".join(lines) + "\n")

    def directory(self, path: str, controller: str = "") -> Path:
        """The directory of cgroup `path`; v1 needs the controller's hierarchy."""
        if self.version == 2:
            base = self.root / "unified"
        else:
            base = self.root / ("cpu,cpuacct" if controller == "cpu" else controller)
        directory = base / path.lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def write(self, path: str, files: dict[str, str], controller: str = "") -> None:
        """Files of one cgroup, by name."""
        directory = self.directory(path, controller)
        for name, text in files.items():
            (directory / name).write_text(text)

    def procs(self, path: str, pids: list[int], controller: str = "") -> None:
        """The processes directly in cgroup `path`, as cgroup.procs lists them."""
        lines = "".join(f"{pid}\n" for pid in pids)
        (self.directory(path, controller) / "cgroup.procs").write_text(lines)
