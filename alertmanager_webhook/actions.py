"""Plans the remediation an alert asks for; needs psutil to find processes.

Planning needs no privilege and changes nothing: a plan says which processes an
action would touch and how, and is recorded for an operator to read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil

from alertmanager_webhook.config import PolicyConfig
from alertmanager_webhook.payload import Alert

log = logging.getLogger(__name__)

# planned: what dry-run would do; skipped: nothing to do, the plan says why;
# failed: the plan itself could not be made.
RESULTS = ("planned", "skipped", "failed")

# cgroup v2 cpu.max is "QUOTA PERIOD" in microseconds; 100 ms is the kernel default.
CPU_PERIOD_US = 100_000

# A plan names at most this many pids, so that a wide match stays readable.
MAX_PIDS_SHOWN = 20


@dataclass(frozen=True)
class ProcessInfo:
    """What a plan needs to know about one running process."""

    pid: int
    name: str
    username: str


ProcessIterator = Callable[[], Iterable[ProcessInfo]]


@dataclass(frozen=True)
class PlannedAction:
    """One action row: what a policy decided for one alert, and the outcome."""

    alert_fingerprint: str
    policy: str
    action: str
    mode: str
    target: str
    plan: str
    result: str


def iter_processes() -> Iterable[ProcessInfo]:
    """Yield this host's processes; those we may not inspect are left out."""
    for proc in psutil.process_iter(["pid", "name", "username"]):
        name, username = proc.info["name"], proc.info["username"]

        # process_iter puts None in place of attributes it was denied.
        if name is None or username is None:
            continue
        yield ProcessInfo(proc.info["pid"], name, username)


def plan_action(
    alert: Alert, policy: PolicyConfig, mode: str, processes: ProcessIterator
) -> PlannedAction:
    """Decide what `policy` would do about `alert`, without doing it."""
    if policy.action == "cpu_cap":
        target, plan, result = _plan_cpu_cap(alert, policy, processes)
    else:
        target, plan, result = "", "no action", "skipped"

    return PlannedAction(
        alert_fingerprint=alert.fingerprint,
        policy=policy.name,
        action=policy.action,
        mode=mode,
        target=target,
        plan=plan,
        result=result,
    )


def _plan_cpu_cap(
    alert: Alert, policy: PolicyConfig, processes: ProcessIterator
) -> tuple[str, str, str]:
    command = alert.labels.get("command", "")
    user = alert.labels.get("user", "")
    if not command or not user:
        missing = " and ".join(
            k for k in ("command", "user") if not alert.labels.get(k)
        )
        return "", f"alert has no {missing} label to find the processes by", "skipped"

    target = f"command={command!r} user={user!r}"
    try:
        pids = sorted(
            p.pid for p in processes() if p.name == command and p.username == user
        )
    except (psutil.Error, OSError) as exc:
        log.warning("process scan failed target=%s err=%s", target, exc)
        return target, f"cannot list processes: {exc}", "failed"

    if not pids:
        return target, f"no running process matches {target}", "skipped"

    cores = float(policy.params["cpu_cores"])
    quota = max(1000, round(cores * CPU_PERIOD_US))  # the kernel's minimum quota
    shown = ", ".join(str(p) for p in pids[:MAX_PIDS_SHOWN])
    if len(pids) > MAX_PIDS_SHOWN:
        shown += f" and {len(pids) - MAX_PIDS_SHOWN} more"
    noun = "process" if len(pids) == 1 else "processes"
    plan = (
        f"cap {len(pids)} {noun} {target} (pids {shown}) to {cores:g} CPU cores "
        f"with cgroup v2 cpu.max '{quota} {CPU_PERIOD_US}'"
    )
    return target, plan, "planned"
