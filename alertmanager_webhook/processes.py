"""Finds the processes an alert names and refuses those no action may touch.

Needs psutil to list processes; reading them needs no privilege.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

import psutil

# A plan names at most this many pids, so that a wide match stays readable.
MAX_PIDS_SHOWN = 20

# The bundle's own services, as they appear in a command line: the entry
# points, and the packages run with `python -m`.
OWN_SCRIPTS = ("aiops", "aiops-webhook", "aiops-exporter", "aiops-detector")
OWN_MODULES = ("alertmanager_webhook", "exporter", "detector", "aiops_cli")

# kthreadd is pid 2; every kernel thread is its child.
KTHREADD = 2


@dataclass(frozen=True)
class ProcessInfo:
    """What a plan needs to know about one running process."""

    pid: int
    name: str
    username: str
    ppid: int = 1
    cmdline: tuple[str, ...] = ()
    # Seconds since the epoch; tells a process from a later one with its pid.
    create_time: float = 0.0


ProcessIterator = Callable[[], Iterable[ProcessInfo]]


class TargetError(Exception):
    """No process may be acted on; the message says why.

    `result` is what a plan records: skipped (nothing to act on), refused (a
    protection check said no) or failed (the process list could not be read).
    """

    def __init__(self, message: str, result: str = "skipped", target: str = ""):
        super().__init__(message)
        self.result = result
        self.target = target


@dataclass(frozen=True)
class Targets:
    """The processes an alert names, after the protection checks."""

    description: str
    processes: tuple[ProcessInfo, ...]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def shown(self) -> str:
        """`2 processes command='x' user='y' (pids 1, 2)`, kept short."""
        pids = self.pids
        noun = "process" if len(pids) == 1 else "processes"
        return f"{len(pids)} {noun} {self.description} (pids {listed(pids)})"


def listed(pids: Collection[int]) -> str:
    """`1, 2, 3 and 40 more`: at most MAX_PIDS_SHOWN of `pids`, in order."""
    shown = ", ".join(str(p) for p in list(pids)[:MAX_PIDS_SHOWN])
    if len(pids) > MAX_PIDS_SHOWN:
        shown += f" and {len(pids) - MAX_PIDS_SHOWN} more"
    return shown


def iter_processes() -> Iterable[ProcessInfo]:
    """Yield this host's processes; those we may not inspect are left out."""
    attrs = ["pid", "name", "username", "ppid", "cmdline", "create_time"]
    for proc in psutil.process_iter(attrs):
        info = proc.info
        # process_iter puts None in place of attributes it was denied.
        if info["name"] is None or info["username"] is None:
            continue
        yield ProcessInfo(
            pid=info["pid"],
            name=info["name"],
            username=info["username"],
            ppid=info["ppid"] or 0,
            cmdline=tuple(info["cmdline"] or ()),
            create_time=info["create_time"] or 0.0,
        )


def own_lineage(server_pid: int | None = None) -> frozenset[int]:
    """This process and its ancestors: the receiver never acts on its supervisors.

    With `server_pid`, the server's children too: its helpers, such as
    multiprocessing's resource tracker, run as a plain `python3`.
    """
    pids = {os.getpid()}
    try:
        pids.update(p.pid for p in psutil.Process().parents())
    except psutil.Error:
        pids.add(os.getppid())
    if server_pid is not None:
        try:
            pids.update(p.pid for p in psutil.Process(server_pid).children())
        except psutil.Error:
            pass  # a server that is gone takes its worker with it
    return frozenset(pids)


class ProcessFinder:
    """Matches alert labels to processes and applies the protected list."""

    def __init__(
        self,
        processes: ProcessIterator = iter_processes,
        protected_commands: Collection[str] = (),
        own_pids: Collection[int] | None = None,
    ) -> None:
        self._processes = processes
        self._protected = frozenset(protected_commands)
        self._own = frozenset(own_lineage() if own_pids is None else own_pids)

    def find(self, labels: Mapping[str, str]) -> Targets:
        """Return the processes of the alert's `command` and `user` labels.

        Raises TargetError when the labels are missing, nothing matches, or
        every match is protected.
        """
        command, user = labels.get("command", ""), labels.get("user", "")
        if not command or not user:
            missing = " and ".join(k for k in ("command", "user") if not labels.get(k))
            raise TargetError(f"alert has no {missing} label to find the processes by")

        description = f"command={command!r} user={user!r}"
        try:
            matched = sorted(
                (
                    p
                    for p in self._processes()
                    if p.name == command and p.username == user
                ),
                key=lambda p: p.pid,
            )
        except (psutil.Error, OSError) as exc:
            raise TargetError(
                f"cannot list processes: {exc}", "failed", description
            ) from exc
        if not matched:
            raise TargetError(
                f"no running process matches {description}", "skipped", description
            )

        refusals = [(p, self.refusal(p)) for p in matched]
        allowed = tuple(p for p, why in refusals if why is None)
        if not allowed:
            first, why = refusals[0]
            raise TargetError(f"refused: pid {first.pid} {why}", "refused", description)
        return Targets(description, allowed)

    def refusal(self, proc: ProcessInfo) -> str | None:
        """Say why `proc` must not be touched, or None when it may be."""
        if proc.pid <= 1:
            return "is init"
        if proc.pid == KTHREADD or proc.ppid == KTHREADD:
            return "is a kernel thread"
        if proc.pid in self._own:
            return "is this receiver, one of its parents or helpers"
        if proc.name in self._protected:
            return f"runs {proc.name!r}, which is protected"
        if _is_own_service(proc.cmdline):
            return "is one of the bundle's own services"
        return None


def _is_own_service(cmdline: tuple[str, ...]) -> bool:
    if not cmdline:
        return False
    if os.path.basename(cmdline[0]) in OWN_SCRIPTS:
        return True
    # `python -m exporter`, or a script path such as .venv/bin/aiops-exporter.
    for i, arg in enumerate(cmdline[1:], 1):
        if cmdline[i - 1] == "-m" and arg.split(".")[0] in OWN_MODULES:
            return True
        if os.path.basename(arg) in OWN_SCRIPTS:
            return True
    return False


def same_process(pid: int, create_time: float) -> psutil.Process | None:
    """Return the process `pid` if it is still the one seen at `create_time`."""
    try:
        proc = psutil.Process(pid)
        if create_time and abs(proc.create_time() - create_time) > 0.01:
            return None
        return proc
    except psutil.Error:
        return None
