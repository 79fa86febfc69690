"""Writes a /proc tree under a test directory, each file in the format the Linux
kernel writes it, so that ProcFs and the samplers read it like the real one."""

from __future__ import annotations

import shutil
from pathlib import Path

from exporter.procfs import ProcFs

TICKS = 100
PAGE = 4096

HOST_CGROUP = "0::/user.slice/user-1000.slice/session-3.scope\n"


class ProcTree:
    """A fake /proc: host files plus one directory per added process."""

    def __init__(self, root: Path, cpus: int = 4) -> None:
        self.root = root
        self.cpus = cpus
        root.mkdir(parents=True, exist_ok=True)
        self.host()

    def procfs(self) -> ProcFs:
        return ProcFs(str(self.root), clock_ticks=TICKS, page_size=PAGE)

    def host(
        self,
        busy: float = 10.0,
        idle: float = 80.0,
        iowait: float = 5.0,
        guest: float = 0.0,
        mem_total_kib: int = 67108864,
        mem_available_kib: int = 50331648,
        oom_kills: int | None = 2,
    ) -> None:
        """Host counters in seconds; busy is split between user and system."""
        user, system = busy * TICKS * 0.6, busy * TICKS * 0.4
        # guest time is part of user already, as the kernel counts it.
        fields = [user, 0, system, idle * TICKS, iowait * TICKS, 0, 0, 0]
        fields += [guest * TICKS, 0]
        line = " ".join(str(int(v)) for v in fields)
        cpu_lines = "".join(f"cpu{n} {line}\n" for n in range(self.cpus))
        (self.root / "stat").write_text(
            f"cpu  {line}\n{cpu_lines}intr 1 0\nctxt 100\nbtime 1700000000\n"
        )
        (self.root / "meminfo").write_text(
            f"MemTotal:       {mem_total_kib} kB\nMemFree:         1048576 kB\n"
            f"MemAvailable:   {mem_available_kib} kB\nBuffers:          123 kB\n"
        )
        vmstat = "nr_free_pages 262144\npgfault 1000\n"
        if oom_kills is not None:
            vmstat += f"oom_kill {oom_kills}\n"
        (self.root / "vmstat").write_text(vmstat)

    def add(
        self,
        pid: int,
        comm: str,
        uid: int = 1000,
        cpu: float = 0.0,
        start: float = 10.0,
        rss: int = 1 << 20,
        threads: int = 1,
        read_bytes: int | None = 0,
        write_bytes: int = 0,
        fds: int = 3,
        cgroup: str = HOST_CGROUP,
        cmdline: tuple[str, ...] = (),
    ) -> None:
        """A process; cpu and start in seconds, rss in bytes."""
        directory = self.root / str(pid)
        directory.mkdir(exist_ok=True)
        utime, stime = int(cpu * TICKS * 0.75), 0
        stime = int(cpu * TICKS) - utime
        fields = [
            "S", 1, pid, pid, 0, -1, 4194560, 2839, 0, 0, 0, utime, stime, 0, 0,
            20, 0, threads, 0, int(start * TICKS), 16965632, rss // PAGE,
            18446744073709551615, 1, 1, 0, 0, 0, 0, 0, 0, 16781312, 2, 0, 0, 0,
            17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]  # fmt: skip
        (directory / "stat").write_text(
            f"{pid} ({comm}) {' '.join(str(f) for f in fields)}\n"
        )
        (directory / "status").write_text(
            f"Name:\t{comm}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\n"
            f"Ngid:\t0\nPid:\t{pid}\nPPid:\t1\nTracerPid:\t0\n"
            f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
            f"Threads:\t{threads}\n"
        )
        if read_bytes is not None:
            (directory / "io").write_text(
                f"rchar: {read_bytes + 4096}\nwchar: {write_bytes + 10}\nsyscr: 12\n"
                f"syscw: 3\nread_bytes: {read_bytes}\nwrite_bytes: {write_bytes}\n"
                "cancelled_write_bytes: 0\n"
            )
        fd = directory / "fd"
        shutil.rmtree(fd, ignore_errors=True)
        fd.mkdir()
        for number in range(fds):
            (fd / str(number)).touch()
        (directory / "cgroup").write_text(cgroup)
        (directory / "cmdline").write_bytes(
            b"".join(arg.encode() + b"\0" for arg in cmdline)
        )

    def vanish_stat(self, pid: int) -> None:
        """The process exits between the listing of /proc and the read of stat."""
        (self.root / str(pid) / "stat").unlink()

    def remove(self, pid: int) -> None:
        shutil.rmtree(self.root / str(pid))
