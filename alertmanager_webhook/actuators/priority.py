"""Renice and ionice a process group, and send it signals; needs psutil.

Both act on the processes the plan found, checked again by pid and start time
at apply, so that a pid the kernel gave to a new process is left alone.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable, Mapping
from typing import Any

import psutil

from alertmanager_webhook.actuators.base import (
    ActuatorError,
    Began,
    Outcome,
    Params,
    Plan,
    fmt_number,
)
from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.processes import (
    ProcessFinder,
    TargetError,
    Targets,
    listed,
    same_process,
)

IONICE = {"idle": psutil.IOPRIO_CLASS_IDLE, "best-effort": psutil.IOPRIO_CLASS_BE}


def target_spec(targets: Targets) -> list[list[float]]:
    return [[p.pid, p.create_time] for p in targets.processes]


def plan_targets(finder: ProcessFinder, labels: Mapping[str, str]) -> Targets | Plan:
    """The alert's processes, or the plan that says why there are none."""
    try:
        return finder.find(labels)
    except TargetError as exc:
        return Plan(exc.target, str(exc), exc.result)


def living(spec_processes: Iterable[list[float]]) -> list[psutil.Process]:
    """The spec's processes that still run as the same processes."""
    alive = [same_process(int(pid), float(ct)) for pid, ct in spec_processes]
    procs = [p for p in alive if p is not None]
    if not procs:
        raise ActuatorError("every target process has ended")
    return procs


def set_priority(
    procs: Iterable[psutil.Process],
    nice: int | None,
    ioclass: str | None,
    *,
    only_lower: bool = False,
) -> dict[str, Any]:
    """Set nice and I/O class; return each process's previous values.

    With `only_lower`, a process already nicer than `nice` keeps its value:
    a cap must never give a process more CPU than it had.
    """
    previous = {}
    for proc in procs:
        try:
            before = {"create_time": proc.create_time(), "nice": proc.nice()}
            io = proc.ionice()
            before["ionice"] = [int(io.ioclass), io.value]
            if nice is not None and not (only_lower and before["nice"] >= nice):
                proc.nice(nice)
            if ioclass is not None:
                proc.ionice(IONICE[ioclass], 7 if ioclass == "best-effort" else None)
        except psutil.NoSuchProcess:
            continue
        except psutil.Error as exc:
            raise ActuatorError(f"cannot renice pid {proc.pid}: {exc}") from exc
        previous[str(proc.pid)] = before
    if not previous:
        raise ActuatorError("every target process ended before it was reniced")
    return {"kind": "priority", "processes": previous}


def restore_priority(undo: Mapping[str, Any]) -> str:
    restored = 0
    for pid, before in undo["processes"].items():
        proc = same_process(int(pid), float(before["create_time"]))
        if proc is None:
            continue
        try:
            proc.nice(int(before["nice"]))
            ioclass, value = before["ionice"]
            # Only the realtime and best-effort classes take a level.
            proc.ionice(ioclass, value if ioclass in (1, 2) else None)
        except psutil.NoSuchProcess:
            continue
        except psutil.Error as exc:
            raise ActuatorError(f"cannot restore priority of pid {pid}: {exc}") from exc
        restored += 1
    return f"restored nice and ionice of {restored} process(es)"


class Renice:
    """The `renice` action: nice value, I/O class, or both."""

    idempotent = True

    def __init__(self, finder: ProcessFinder) -> None:
        self._finder = finder

    def plan(
        self, labels: Mapping[str, str], policy: PolicyConfig, params: Params
    ) -> Plan:
        targets = plan_targets(self._finder, labels)
        if isinstance(targets, Plan):
            return targets

        nice = params.get("nice")
        ioclass = params.get("ionice_class")
        parts = []
        if nice is not None:
            parts.append(f"nice {fmt_number(nice)}")
        if ioclass is not None:
            parts.append(f"ionice class {ioclass}")
        return Plan(
            targets.description,
            f"renice {targets.shown()} to {' and '.join(parts)}",
            spec={
                "processes": target_spec(targets),
                "nice": None if nice is None else int(float(nice)),
                "ionice_class": ioclass,
            },
        )

    def apply(self, spec: Mapping[str, Any]) -> Outcome:
        undo = set_priority(
            living(spec["processes"]), spec["nice"], spec["ionice_class"]
        )
        return Outcome(f"reniced {len(undo['processes'])} process(es)", undo)

    def restore(self, undo: Mapping[str, Any]) -> str:
        return restore_priority(undo)


class Signal:
    """The `signal` action; only the signal its policy names, never undone."""

    idempotent = False

    def __init__(self, finder: ProcessFinder) -> None:
        self._finder = finder

    def plan(
        self, labels: Mapping[str, str], policy: PolicyConfig, params: Params
    ) -> Plan:
        targets = plan_targets(self._finder, labels)
        if isinstance(targets, Plan):
            return targets

        name = str(params["signal"])
        return Plan(
            targets.description,
            f"send {name} to {targets.shown()}",
            spec={"processes": target_spec(targets), "signal": name},
        )

    def apply(self, spec: Mapping[str, Any], began: Began | None = None) -> Outcome:
        signum = signal.Signals[spec["signal"]]
        sent: list[int] = []
        living_now = living(spec["processes"])
        if began is not None:
            # Before the first signal: a crash between the two leaves the
            # action unknown, never sent twice.
            began()
        for proc in living_now:
            try:
                os.kill(proc.pid, signum)
            except ProcessLookupError:
                continue
            except OSError as exc:
                raise ActuatorError(
                    f"cannot send {signum.name} to pid {proc.pid}: {exc}"
                ) from exc
            sent.append(proc.pid)
        # The pids it reached, which the action's log line shows.
        if not sent:
            return Outcome(f"sent {signum.name} to none: every target had ended")
        noun = "pid" if len(sent) == 1 else "pids"
        return Outcome(f"sent {signum.name} to {noun} {listed(sent)}")

    def restore(self, undo: Mapping[str, Any]) -> str:
        return "a signal cannot be taken back"
