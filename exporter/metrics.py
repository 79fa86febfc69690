"""Every metric the exporter serves: names, help, labels, and the families built
from host, process and GPU samples. Needs prometheus_client's metric families."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.gpu import GpuReading, GpuSample
from exporter.processes import ProcessSample


@dataclass(frozen=True)
class Spec:
    """One metric's name, help string and label names."""

    name: str
    help: str
    labels: tuple[str, ...] = ()

    def gauge(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.help, labels=self.labels)

    def counter(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.help, labels=self.labels)


GROUP = ("command", "user")
GPU = ("gpu", "uuid")

HOST_CPU_USAGE = Spec(
    "aiops_host_cpu_usage_ratio",
    "Share of the host's CPU time spent busy (not idle or iowait) over the last "
    "collection interval, 0-1.",
)
HOST_CPU_COUNT = Spec("aiops_host_cpu_count", "Logical CPUs of the host.")
HOST_MEMORY_TOTAL = Spec(
    "aiops_host_memory_total_bytes", "Physical memory of the host, in bytes."
)
HOST_MEMORY_AVAILABLE = Spec(
    "aiops_host_memory_available_bytes",
    "Memory the host can give to new work without swapping, in bytes.",
)
GROUP_CPU_USAGE = Spec(
    "aiops_process_group_cpu_usage_ratio",
    "CPU time (user and system) of a user's processes of one command over the "
    "last collection interval, as a share of the whole host's CPU capacity, 0-1. "
    'Groups past the top N are summed under command="(other)",user="(other)".',
    GROUP,
)
GROUP_RESIDENT = Spec(
    "aiops_process_group_resident_memory_bytes",
    "Resident memory of a user's processes of one command, in bytes.",
    GROUP,
)
GROUP_PROCESSES = Spec(
    "aiops_process_group_processes",
    "Processes a user runs with one command name (the /proc comm).",
    GROUP,
)
NVML_AVAILABLE = Spec(
    "aiops_nvml_available",
    "1 when NVML started and GPUs are read, 0 when the driver or library is missing.",
)
GPU_INFO = Spec(
    "aiops_gpu_info",
    "GPU identity; always 1.",
    ("gpu", "uuid", "name", "pci_bus_id", "driver_version"),
)
GPU_UTILIZATION = Spec(
    "aiops_gpu_utilization_ratio",
    "Share of the last sample period in which a kernel ran on the GPU, 0-1.",
    GPU,
)
GPU_MEMORY_UTILIZATION = Spec(
    "aiops_gpu_memory_utilization_ratio",
    "Share of the last sample period in which GPU memory was read or written, 0-1.",
    GPU,
)
GPU_MEMORY_USED = Spec(
    "aiops_gpu_memory_used_bytes", "GPU memory allocated, in bytes.", GPU
)
GPU_MEMORY_TOTAL = Spec(
    "aiops_gpu_memory_total_bytes", "GPU memory installed, in bytes.", GPU
)
GPU_TEMPERATURE = Spec(
    "aiops_gpu_temperature_celsius", "GPU core temperature, in degrees Celsius.", GPU
)
GPU_POWER = Spec("aiops_gpu_power_watts", "GPU board power draw, in watts.", GPU)
GPU_POWER_LIMIT = Spec(
    "aiops_gpu_power_limit_watts", "GPU power limit in force, in watts.", GPU
)
SOURCE_LAST_SUCCESS = Spec(
    "aiops_exporter_source_last_success_timestamp_seconds",
    "Unix time of a source's last successful collection; 0 before the first.",
    ("source",),
)
SOURCE_DURATION = Spec(
    "aiops_exporter_source_duration_seconds",
    "Seconds a source's last collection took; its time limit when it ran over.",
    ("source",),
)
SOURCE_ERRORS = Spec(
    "aiops_exporter_source_errors_total",
    "Collections of a source that failed, ran over their time limit, or were "
    "skipped because the previous one still ran.",
    ("source",),
)

# GPU gauges in the order served, with the reading field each one takes.
_GPU_FIELDS = (
    (GPU_UTILIZATION, "utilization_ratio"),
    (GPU_MEMORY_UTILIZATION, "memory_utilization_ratio"),
    (GPU_MEMORY_USED, "memory_used_bytes"),
    (GPU_MEMORY_TOTAL, "memory_total_bytes"),
    (GPU_TEMPERATURE, "temperature_celsius"),
    (GPU_POWER, "power_watts"),
    (GPU_POWER_LIMIT, "power_limit_watts"),
)


def process_families(sample: ProcessSample) -> list[Metric]:
    """Host and process-group families; CPU shares are left out until known."""
    host = sample.host
    families: list[Metric] = []
    if host.cpu_ratio is not None:
        families.append(_single(HOST_CPU_USAGE, host.cpu_ratio))
    families.append(_single(HOST_CPU_COUNT, host.cpu_count))
    families.append(_single(HOST_MEMORY_TOTAL, host.memory_total_bytes))
    families.append(_single(HOST_MEMORY_AVAILABLE, host.memory_available_bytes))

    cpu, resident, processes = (
        GROUP_CPU_USAGE.gauge(),
        GROUP_RESIDENT.gauge(),
        GROUP_PROCESSES.gauge(),
    )
    for group in sample.groups:
        labels = [group.command, group.user]
        if group.cpu_ratio is not None:
            cpu.add_metric(labels, group.cpu_ratio)
        resident.add_metric(labels, group.resident_bytes)
        processes.add_metric(labels, group.processes)

    families.extend(f for f in (cpu, resident, processes) if f.samples)
    return families


def gpu_families(sample: GpuSample) -> list[Metric]:
    """NVML availability and, when available, one series per GPU and field."""
    families: list[Metric] = [_single(NVML_AVAILABLE, 1 if sample.available else 0)]
    if not sample.available:
        return families

    info = GPU_INFO.gauge()
    for gpu in sample.gpus:
        labels = [str(gpu.index), gpu.uuid, gpu.name, gpu.pci_bus_id]
        info.add_metric([*labels, sample.driver_version], 1)

    gauges = []
    for spec, field in _GPU_FIELDS:
        family = spec.gauge()
        for gpu in sample.gpus:
            value = getattr(gpu, field)
            if value is not None:
                family.add_metric(_gpu_labels(gpu), value)
        gauges.append(family)

    families.extend(f for f in (info, *gauges) if f.samples)
    return families


def health_families(
    last_success: Iterable[tuple[str, float]],
    durations: Iterable[tuple[str, float]],
    errors: Iterable[tuple[str, int]],
) -> list[Metric]:
    """The exporter's own per-source health, given (source, value) pairs."""
    success, duration, failed = (
        SOURCE_LAST_SUCCESS.gauge(),
        SOURCE_DURATION.gauge(),
        SOURCE_ERRORS.counter(),
    )
    for source, value in last_success:
        success.add_metric([source], value)
    for source, value in durations:
        duration.add_metric([source], value)
    for source, count in errors:
        failed.add_metric([source], count)
    return [success, duration, failed]


def _single(spec: Spec, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.name, spec.help, value=value)


def _gpu_labels(gpu: GpuReading) -> list[str]:
    return [str(gpu.index), gpu.uuid]
