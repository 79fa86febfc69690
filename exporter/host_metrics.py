"""The host and process-group metrics, built from a ProcessSample."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.metrics import Spec, non_empty
from exporter.processes import GroupUsage, ProcessSample

# command and user are on every group; container_id, pod_uid and unit are set
# only when the config groups by container or unit, and are empty otherwise.
GROUP = ("command", "user", "container_id", "pod_uid", "unit")

HOST_CPU_USAGE = Spec(
    "aiops_host_cpu_usage_ratio",
    "Share of the host's CPU time spent busy (not idle or iowait) over the last "
    "collection interval, 0-1.",
)
HOST_LOGICAL_CPUS = Spec("aiops_host_logical_cpus", "Logical CPUs of the host.")
HOST_MEMORY_TOTAL = Spec(
    "aiops_host_memory_total_bytes", "Physical memory of the host, in bytes."
)
HOST_MEMORY_AVAILABLE = Spec(
    "aiops_host_memory_available_bytes",
    "Memory the host can give to new work without swapping, in bytes.",
)
HOST_OOM_KILLS = Spec(
    "aiops_host_oom_kills_total",
    "Processes the kernel's OOM killer ended since boot (/proc/vmstat oom_kill).",
)
PROCESSES_SKIPPED = Spec(
    "aiops_process_skipped",
    "Processes the last collection skipped: they exited or their /proc entries "
    "could not be read.",
)
GROUP_CPU_USAGE = Spec(
    "aiops_process_group_cpu_usage_ratio",
    "CPU time (user and system) of a process group over the last collection "
    "interval, as a share of the whole host's CPU capacity, 0-1. Groups past the "
    'top N are summed under command="(other)",user="(other)".',
    GROUP,
)
GROUP_CPU_SECONDS = Spec(
    "aiops_process_group_cpu_seconds_total",
    "CPU seconds (user and system) a process group spent while the exporter ran.",
    GROUP,
)
GROUP_RESIDENT = Spec(
    "aiops_process_group_resident_memory_bytes",
    "Resident memory of a process group, in bytes.",
    GROUP,
)
GROUP_PROCESSES = Spec(
    "aiops_process_group_processes",
    "Processes in a group; a group is a user's processes of one command (the "
    "/proc comm), or a container, or a systemd unit, as configured.",
    GROUP,
)
GROUP_THREADS = Spec(
    "aiops_process_group_threads", "Threads of a process group's processes.", GROUP
)
GROUP_OPEN_FILES = Spec(
    "aiops_process_group_open_files",
    "Open file descriptors of a process group's processes.",
    GROUP,
)
GROUP_READ_BYTES = Spec(
    "aiops_process_group_read_bytes_total",
    "Bytes a process group read from storage while the exporter ran "
    "(/proc/<pid>/io read_bytes; needs the exporter to run as root).",
    GROUP,
)
GROUP_WRITTEN_BYTES = Spec(
    "aiops_process_group_written_bytes_total",
    "Bytes a process group wrote to storage while the exporter ran "
    "(/proc/<pid>/io write_bytes; needs the exporter to run as root).",
    GROUP,
)
# Limits are of the group's own cgroup: one a parent sets (a pod's, a slice's)
# is not inherited here, as it is shared with the parent's other children.
_OWN_CGROUP = (
    "the cgroup a process group owns (a container's, a unit's, or one that holds "
    "exactly the processes of one command)"
)
GROUP_CPU_LIMIT = Spec(
    "aiops_process_group_cpu_limit_cores",
    f"CPU limit of {_OWN_CGROUP}, in cores: cgroup v2 cpu.max or v1 "
    "cpu.cfs_quota_us over cpu.cfs_period_us. Absent when unlimited or unknown.",
    GROUP,
)
GROUP_MEMORY_LIMIT = Spec(
    "aiops_process_group_memory_limit_bytes",
    f"Memory limit of {_OWN_CGROUP}, in bytes: cgroup v2 memory.max or v1 "
    "memory.limit_in_bytes. Absent when unlimited or unknown.",
    GROUP,
)
GROUP_MEMORY_HIGH = Spec(
    "aiops_process_group_memory_high_bytes",
    f"Memory above which the kernel throttles and reclaims {_OWN_CGROUP}, in "
    "bytes (cgroup v2 memory.high). Absent when unset or unknown.",
    GROUP,
)
GROUP_OOM_KILLS = Spec(
    "aiops_process_group_oom_kills_total",
    f"Processes the OOM killer ended in {_OWN_CGROUP} and below since it was "
    "created (cgroup v2 memory.events or v1 memory.oom_control oom_kill).",
    GROUP,
)
GROUP_INFO = Spec(
    "aiops_process_group_info",
    "The command line of a group's oldest process, secrets redacted; only "
    "exported when process_cmdline is on. Always 1.",
    (*GROUP, "cmdline"),
)


def process_families(sample: ProcessSample) -> list[Metric]:
    """Host and process-group families; CPU shares are left out until known."""
    host = sample.host
    families: list[Metric] = []
    if host.cpu_ratio is not None:
        families.append(HOST_CPU_USAGE.single(host.cpu_ratio))
    families.append(HOST_LOGICAL_CPUS.single(host.cpu_count))
    families.append(HOST_MEMORY_TOTAL.single(host.memory_total_bytes))
    families.append(HOST_MEMORY_AVAILABLE.single(host.memory_available_bytes))
    if host.oom_kills is not None:
        oom = HOST_OOM_KILLS.counter()
        oom.add_metric([], host.oom_kills)
        families.append(oom)
    families.append(PROCESSES_SKIPPED.single(sample.skipped))

    cpu, cpu_seconds, resident, processes = (
        GROUP_CPU_USAGE.gauge(),
        GROUP_CPU_SECONDS.counter(),
        GROUP_RESIDENT.gauge(),
        GROUP_PROCESSES.gauge(),
    )
    threads, open_files, read, written = (
        GROUP_THREADS.gauge(),
        GROUP_OPEN_FILES.gauge(),
        GROUP_READ_BYTES.counter(),
        GROUP_WRITTEN_BYTES.counter(),
    )
    cpu_limit, memory_limit, memory_high, oom_kills = (
        GROUP_CPU_LIMIT.gauge(),
        GROUP_MEMORY_LIMIT.gauge(),
        GROUP_MEMORY_HIGH.gauge(),
        GROUP_OOM_KILLS.counter(),
    )
    info = GROUP_INFO.gauge()
    for group in sample.groups:
        labels = _labels(group)
        if group.cpu_ratio is not None:
            cpu.add_metric(labels, group.cpu_ratio)
        cpu_seconds.add_metric(labels, group.cpu_seconds_total)
        resident.add_metric(labels, group.resident_bytes)
        processes.add_metric(labels, group.processes)
        threads.add_metric(labels, group.threads)
        open_files.add_metric(labels, group.open_files)
        read.add_metric(labels, group.read_bytes_total)
        written.add_metric(labels, group.written_bytes_total)
        if group.cmdline:
            info.add_metric([*labels, group.cmdline], 1)
        _add_limits(group, labels, cpu_limit, memory_limit, memory_high, oom_kills)

    families.extend(
        non_empty(
            [cpu, cpu_seconds, resident, processes, threads, open_files, read, written]
        )
    )
    families.extend(non_empty([cpu_limit, memory_limit, memory_high, oom_kills]))
    families.extend(non_empty([info]))
    return families


def _add_limits(
    group: GroupUsage,
    labels: list[str],
    cpu: GaugeMetricFamily,
    memory: GaugeMetricFamily,
    high: GaugeMetricFamily,
    oom_kills: CounterMetricFamily,
) -> None:
    limits = group.limits
    if limits.cpu_cores is not None:
        cpu.add_metric(labels, limits.cpu_cores)
    if limits.memory_bytes is not None:
        memory.add_metric(labels, limits.memory_bytes)
    if limits.memory_high_bytes is not None:
        high.add_metric(labels, limits.memory_high_bytes)
    if limits.oom_kills is not None:
        oom_kills.add_metric(labels, limits.oom_kills)


def _labels(group: GroupUsage) -> list[str]:
    return [group.command, group.user, group.container_id, group.pod_uid, group.unit]
