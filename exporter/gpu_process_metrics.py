"""The per-process GPU metrics, built from a GpuProcessSample: GPU memory, SM
share and process count per group of processes on each GPU."""

from __future__ import annotations

from prometheus_client.core import Metric

from exporter.gpu_processes import GpuProcessGroup, GpuProcessSample
from exporter.metrics import Spec, non_empty

# pid and cmdline are empty unless the config asks for one series per process;
# container_id and pod_uid are empty for processes outside containers.
GPU_PROCESS = ("gpu", "uuid", "command", "user", "container_id", "pod_uid", "pid")

PROCESS_MEMORY = Spec(
    "aiops_gpu_process_memory_used_bytes",
    "GPU memory used by a group of compute processes on a GPU, in bytes.",
    GPU_PROCESS,
)
PROCESS_SM = Spec(
    "aiops_gpu_process_sm_utilization_ratio",
    "Share of a GPU's SM time a group of processes used since the last "
    "collection, 0-1 (NVML per-process utilization).",
    GPU_PROCESS,
)
PROCESS_COUNT = Spec(
    "aiops_gpu_processes",
    "Compute processes of a group on a GPU.",
    GPU_PROCESS,
)
PROCESS_INFO = Spec(
    "aiops_gpu_process_info",
    "A GPU process's command line, secrets redacted; only with per-PID series "
    "and process_cmdline on. Always 1.",
    (*GPU_PROCESS, "cmdline"),
)


def gpu_process_families(sample: GpuProcessSample) -> list[Metric]:
    """One series per group and field; nothing when NVML is unavailable."""
    memory, sm, count, info = (
        PROCESS_MEMORY.gauge(),
        PROCESS_SM.gauge(),
        PROCESS_COUNT.gauge(),
        PROCESS_INFO.gauge(),
    )
    for group in sample.groups:
        labels = _labels(group)
        count.add_metric(labels, group.processes)
        if group.memory_used_bytes is not None:
            memory.add_metric(labels, group.memory_used_bytes)
        if group.sm_ratio is not None:
            sm.add_metric(labels, group.sm_ratio)
        if group.cmdline:
            info.add_metric([*labels, group.cmdline], 1)
    return non_empty([memory, sm, count, info])


def _labels(group: GpuProcessGroup) -> list[str]:
    return [
        str(group.gpu),
        group.uuid,
        group.command,
        group.user,
        group.container_id,
        group.pod_uid,
        group.pid,
    ]
