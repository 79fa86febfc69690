"""A process group that burns CPU on purpose, for the demo's host case.

Each process names itself through prctl(PR_SET_NAME), so /proc shows the
given command name, the way a runaway application would appear.
"""

from __future__ import annotations

import subprocess
import sys

# Spins at the lowest priority so the bundle itself keeps up while the host
# reads as fully busy; stops by itself after `limit` seconds in any case.
_BURN = """
import ctypes, os, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
os.nice(19)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    pass
"""


class CpuHog:
    def __init__(self, command: str, limit_seconds: float = 300.0) -> None:
        if len(command.encode()) > 15:
            raise ValueError(f"command name {command!r} is longer than the kernel's 15")
        self.command = command
        self.limit_seconds = limit_seconds
        self.processes: list[subprocess.Popen] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def start(self, processes: int = 1) -> None:
        argv = [sys.executable, "-c", _BURN, self.command, str(self.limit_seconds)]
        self.processes = [subprocess.Popen(argv) for _ in range(processes)]

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()
        self.processes = []
