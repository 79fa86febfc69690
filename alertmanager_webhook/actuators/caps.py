"""CPU cap and memory high-water mark through cgroups the receiver manages.

The CPU cap falls back to renice where no cgroup hierarchy is writable; the
memory mark has no such fallback and fails instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alertmanager_webhook.actuators.base import ActuatorError, Outcome, Params, Plan
from alertmanager_webhook.actuators.priority import (
    living,
    plan_targets,
    restore_priority,
    set_priority,
    target_spec,
)
from alertmanager_webhook.cgroups import (
    CgroupError,
    Cgroups,
    CgroupUnavailable,
    Hierarchy,
    target_group,
)
from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.processes import ProcessFinder

# CFS bandwidth period in microseconds; 100 ms is the kernel's default.
CPU_PERIOD_US = 100_000
# The kernel refuses a quota below 1 ms.
MIN_QUOTA_US = 1000


def cpu_settings(hierarchy: Hierarchy, cores: float) -> dict[str, str]:
    quota = max(MIN_QUOTA_US, round(cores * CPU_PERIOD_US))
    if hierarchy.version == 2:
        return {"cpu.max": f"{quota} {CPU_PERIOD_US}"}
    # v1 checks the quota against the period in force, so the period goes first.
    return {"cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(quota)}


def memory_settings(hierarchy: Hierarchy, limit: int) -> dict[str, str]:
    # v1 has no memory.high; its soft limit is the nearest: reclaim under pressure.
    name = "memory.high" if hierarchy.version == 2 else "memory.soft_limit_in_bytes"
    return {name: str(limit)}


class CpuCap:
    """The `cpu_cap` action: a CFS bandwidth cap on the alert's process group."""

    idempotent = True

    def __init__(self, finder: ProcessFinder, cgroups: Cgroups) -> None:
        self._finder = finder
        self._cgroups = cgroups

    def plan(
        self, labels: Mapping[str, str], policy: PolicyConfig, params: Params
    ) -> Plan:
        targets = plan_targets(self._finder, labels)
        if isinstance(targets, Plan):
            return targets

        cores = float(params["cpu_cores"])
        nice = int(float(params.get("fallback_nice", 10.0)))
        group = target_group(targets.description)
        try:
            hierarchy = self._cgroups.usable("cpu")
            how = self._cgroups.describe(
                hierarchy, group, cpu_settings(hierarchy, cores)
            )
        except CgroupUnavailable as exc:
            how = f"nice {nice}, because {exc}"
        return Plan(
            targets.description,
            f"cap {targets.shown()} to {cores:g} CPU cores with {how}",
            spec={
                "processes": target_spec(targets),
                "cores": cores,
                "group": group,
                "fallback_nice": nice,
            },
        )

    def apply(self, spec: Mapping[str, Any]) -> Outcome:
        procs = living(spec["processes"])
        pids = [p.pid for p in procs]
        try:
            hierarchy = self._cgroups.usable("cpu")
            settings = cpu_settings(hierarchy, float(spec["cores"]))
            undo = self._cgroups.confine("cpu", spec["group"], pids, settings)
        except CgroupUnavailable as exc:
            undo = set_priority(
                procs, int(spec["fallback_nice"]), None, only_lower=True
            )
            return Outcome(f"reniced to {spec['fallback_nice']} ({exc})", undo)
        except CgroupError as exc:
            raise ActuatorError(str(exc)) from exc

        where = self._cgroups.describe(hierarchy, spec["group"], settings)
        return Outcome(f"moved pids {undo['moved']} into {where}", undo)

    def restore(self, undo: Mapping[str, Any]) -> str:
        if undo.get("kind") == "priority":
            return restore_priority(undo)
        try:
            return self._cgroups.release(undo)
        except CgroupError as exc:
            raise ActuatorError(str(exc)) from exc


class MemoryHigh:
    """The `memory_high` action: throttle and reclaim above a number of bytes."""

    idempotent = True

    def __init__(self, finder: ProcessFinder, cgroups: Cgroups) -> None:
        self._finder = finder
        self._cgroups = cgroups

    def plan(
        self, labels: Mapping[str, str], policy: PolicyConfig, params: Params
    ) -> Plan:
        targets = plan_targets(self._finder, labels)
        if isinstance(targets, Plan):
            return targets

        limit = int(float(params["memory_bytes"]))
        group = target_group(targets.description)
        try:
            hierarchy = self._cgroups.usable("memory")
        except CgroupUnavailable as exc:
            return Plan(targets.description, f"cannot cap memory: {exc}", "failed")
        how = self._cgroups.describe(
            hierarchy, group, memory_settings(hierarchy, limit)
        )
        return Plan(
            targets.description,
            f"hold {targets.shown()} to {limit} bytes with {how}",
            spec={"processes": target_spec(targets), "bytes": limit, "group": group},
        )

    def apply(self, spec: Mapping[str, Any]) -> Outcome:
        pids = [p.pid for p in living(spec["processes"])]
        try:
            hierarchy = self._cgroups.usable("memory")
            settings = memory_settings(hierarchy, int(spec["bytes"]))
            undo = self._cgroups.confine("memory", spec["group"], pids, settings)
        except CgroupError as exc:
            raise ActuatorError(str(exc)) from exc
        where = self._cgroups.describe(hierarchy, spec["group"], settings)
        return Outcome(f"moved pids {undo['moved']} into {where}", undo)

    def restore(self, undo: Mapping[str, Any]) -> str:
        try:
            return self._cgroups.release(undo)
        except CgroupError as exc:
            raise ActuatorError(str(exc)) from exc
