"""Who uses which GPU: each compute process's GPU memory and SM share from NVML,
named by /proc (command, user, container, pod), summed per container or pod and
command by default, or kept per PID when the config asks.

Needs NVML; a process NVML names but /proc does not show (the exporter is in
another PID namespace) keeps NVML's process name and an unknown user.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.gpu_workers import GpuWorkers
from exporter.identity import IdentityCache
from exporter.nvml_session import GpuGone, NvmlCallError, NvmlSession
from exporter.once import Once
from exporter.procfs import ProcFs

log = logging.getLogger(__name__)

UNKNOWN = "(unknown)"


@dataclass(frozen=True)
class GpuProcessGroup:
    """Processes on one GPU with the same labels; pid is set only per PID."""

    gpu: int
    uuid: str
    command: str
    user: str
    container_id: str
    pod_uid: str
    pid: str
    cmdline: str
    processes: int
    memory_used_bytes: int | None
    sm_ratio: float | None


@dataclass(frozen=True)
class GpuProcessSample:
    available: bool
    groups: tuple[GpuProcessGroup, ...] = ()


# One process: its group's labels, its GPU memory and its SM share.
_Process = tuple[tuple[Any, ...], int | None, float | None]


@dataclass
class _Group:
    processes: int = 0
    memory: int | None = None
    sm: float | None = None


class GpuProcessReader:
    """Reads the compute processes of every GPU; one caller at a time."""

    def __init__(
        self,
        session: NvmlSession,
        procfs: ProcFs,
        identities: IdentityCache,
        per_pid: bool = False,
        known: Callable[[], Mapping[int, tuple[int, str]]] = dict,
        timeout_seconds: float = 2.0,
    ) -> None:
        self._session = session
        self._procfs = procfs
        self._identities = identities
        self._per_pid = per_pid
        self._known = known
        self._workers = GpuWorkers("gpu-processes", timeout_seconds)
        # NVML returns only samples newer than the timestamp it is given; the
        # newest one seen per GPU, so that no sample is counted twice.
        self._last_sample: dict[int, int] = {}
        self._once = Once(log)

    def read(self) -> GpuProcessSample:
        session = self._session
        if session.start() is None:
            return GpuProcessSample(available=False)

        outcomes = self._workers.run(self._read_gpu, range(session.device_count()))
        groups: dict[tuple[Any, ...], _Group] = {}
        for outcome in outcomes.values():
            # A GPU lost or hung: the GPU reader reports its state, and its
            # processes are unknown.
            if outcome.hung or isinstance(outcome.error, GpuGone):
                continue
            if outcome.error is not None:
                raise outcome.error
            for key, memory, share in outcome.value or ():
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _Group()
                group.processes += 1
                # On some platforms NVML cannot say a process's memory: None.
                if memory is not None:
                    group.memory = (group.memory or 0) + memory
                if share is not None:
                    group.sm = (group.sm or 0.0) + share

        return GpuProcessSample(
            available=True,
            groups=tuple(
                GpuProcessGroup(
                    *key,
                    processes=group.processes,
                    memory_used_bytes=group.memory,
                    sm_ratio=None if group.sm is None else min(1.0, group.sm),
                )
                for key, group in sorted(groups.items())
            ),
        )

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` for reads hung in the driver; True when none is."""
        return self._workers.join(timeout)

    def _read_gpu(self, index: int) -> list[_Process]:
        """(labels, GPU memory, SM share) of each compute process on a GPU."""
        session = self._session
        handle = session.handle(index)
        known = session.identities.get(index)
        uuid = known.uuid if known else session.call("nvmlDeviceGetUUID", handle)
        processes = session.call("nvmlDeviceGetComputeRunningProcesses", handle)
        if not processes:
            return []
        shares = self._sm_shares(index, handle)

        started = self._known()
        return [
            (
                (index, uuid or "", *self._labels(process.pid, started)),
                process.usedGpuMemory,
                None if shares is None else shares.get(process.pid, 0.0),
            )
            for process in processes
        ]

    def _sm_shares(self, index: int, handle: Any) -> dict[int, float] | None:
        """SM share per pid since the last call; None where NVML has none."""
        nvml = self._session.nvml
        since = self._last_sample.get(index, 0)
        try:
            samples = nvml.nvmlDeviceGetProcessUtilization(handle, since)
        except nvml.NVMLError as exc:
            if exc.value == nvml.NVML_ERROR_NOT_FOUND:
                # Supported, but no process ran a kernel since `since`.
                return {}
            error = self._session.classify("nvmlDeviceGetProcessUtilization", exc)
            if error is not None:
                raise error from exc
            return None

        per_pid: dict[int, list[int]] = {}
        for sample in samples:
            per_pid.setdefault(sample.pid, []).append(sample.smUtil)
            since = max(since, sample.timeStamp)
        self._last_sample[index] = since
        # NVML gives percent of the GPU's SM time per sample; average a pid's
        # samples over the window they cover.
        return {pid: sum(v) / len(v) / 100 for pid, v in per_pid.items()}

    def _labels(
        self, pid: int, known: Mapping[int, tuple[int, str]]
    ) -> tuple[str, ...]:
        # The host sampler's last pass named this pid already. A pid reused
        # since then keeps its old labels for at most one interval: a new
        # process on a GPU within seconds of its pid's last owner exiting.
        started = known.get(pid)
        if started is None:
            stat = self._procfs.stat(pid)
            started = None if stat is None else (stat.start_ticks, stat.comm)
        identity = None
        if started is not None:
            identity = self._identities.get(pid, started[0])
        if started is None or identity is None:
            command = self._nvml_name(pid)
            return (command, UNKNOWN, "", "", str(pid) if self._per_pid else "", "")

        cgroup = identity.cgroup
        return (
            started[1],
            identity.user,
            cgroup.container_id,
            cgroup.pod_uid,
            str(pid) if self._per_pid else "",
            identity.cmdline if self._per_pid else "",
        )

    def _nvml_name(self, pid: int) -> str:
        self._once.log(
            logging.INFO,
            "namespace",
            "a GPU process is not in this /proc (run the exporter in the host's "
            "PID namespace to name users and containers) pid=%s",
            pid,
        )
        try:
            name = self._session.call("nvmlSystemGetProcessName", pid)
        except NvmlCallError:
            name = None
        # NVML gives the executable's path; /proc's comm is at most 15 bytes of
        # its base name, and the two should group alike.
        return os.path.basename(name)[:15] if name else UNKNOWN
