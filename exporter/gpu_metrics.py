"""The GPU metrics: one series per GPU and field, identity in aiops_gpu_info,
health as a state set, all built from a GpuSample."""

from __future__ import annotations

from prometheus_client.core import Metric

from exporter.gpu import GpuSample
from exporter.gpu_device import GpuReading
from exporter.metrics import Spec, non_empty
from exporter.nvml_session import HEALTHY, LOST, NOT_RESPONDING, RESET_REQUIRED

GPU = ("gpu", "uuid")
MIG = (*GPU, "gpu_instance", "compute_instance")
HEALTH_STATES = (HEALTHY, LOST, RESET_REQUIRED, NOT_RESPONDING)

NVML_AVAILABLE = Spec(
    "aiops_nvml_available",
    "1 when NVML started and GPUs are read, 0 when the driver or library is missing.",
)
GPU_INFO = Spec(
    "aiops_gpu_info",
    "GPU identity; always 1. serial is empty where the GPU has none.",
    (*GPU, "name", "pci_bus_id", "driver_version", "cuda_version", "serial"),
)
GPU_DEVICES = Spec("aiops_gpu_devices", "GPUs NVML reports on this host.")
GPU_DEVICES_EXPECTED = Spec(
    "aiops_gpu_devices_expected",
    "GPUs this host should have (expected_gpus in the config); absent when unset.",
)
GPU_HEALTH = Spec(
    "aiops_gpu_health_state",
    "1 for the state a GPU is in: healthy (answers NVML), lost (fallen off the "
    "bus or otherwise gone), reset_required or not_responding (an NVML call "
    "hung past its time limit); 0 for the others.",
    (*GPU, "state"),
)
GPU_RECOVERY = Spec(
    "aiops_gpu_recovery_action",
    "The recovery the driver recommends for a GPU (none, gpu_reset, node_reboot, "
    "drain_p2p, drain_and_reset), as one series with value 1.",
    (*GPU, "action"),
)
GPU_NVML_ERRORS = Spec(
    "aiops_gpu_nvml_errors_total",
    "NVML calls for a GPU that failed other than as unsupported or GPU lost; "
    "their fields were left out.",
    GPU,
)
CLOCK_REASON = Spec(
    "aiops_gpu_clock_event_reason_active",
    "1 while a reason holds the GPU's clocks down (the NVML clocks event or "
    "throttle reasons), 0 otherwise; only reasons the GPU supports.",
    (*GPU, "reason"),
)
NVLINK_ERRORS = Spec(
    "aiops_gpu_nvlink_errors_total",
    "NVLink errors summed over a GPU's links, by type (crc_flit, crc_data, "
    "replay, recovery, ecc_data).",
    (*GPU, "type"),
)
RETIRED_PAGES = Spec(
    "aiops_gpu_retired_pages",
    "GPU memory pages retired, by cause (multiple_single_bit, double_bit); "
    "pre-Ampere GPUs only.",
    (*GPU, "cause"),
)
REMAPPED_ROWS = Spec(
    "aiops_gpu_remapped_rows",
    "GPU memory rows remapped, by cause (correctable, uncorrectable).",
    (*GPU, "cause"),
)
FAN_SPEED = Spec(
    "aiops_gpu_fan_speed_ratio",
    "Speed a GPU's fan is set to, as a share of its maximum (NVML may report "
    "above 1); one series per fan, none on passively cooled GPUs.",
    (*GPU, "fan"),
)
MIG_INFO = Spec(
    "aiops_gpu_mig_instance_info", "A MIG device; always 1.", (*MIG, "mig_uuid")
)
MIG_MEMORY_USED = Spec(
    "aiops_gpu_mig_instance_memory_used_bytes",
    "Memory allocated on a MIG device, in bytes.",
    MIG,
)
MIG_MEMORY_TOTAL = Spec(
    "aiops_gpu_mig_instance_memory_total_bytes",
    "Memory of a MIG device, in bytes.",
    MIG,
)


def _gauge(key: str, name: str, help: str) -> tuple[str, Spec, bool]:
    return key, Spec(name, help, GPU), False


def _counter(key: str, name: str, help: str) -> tuple[str, Spec, bool]:
    return key, Spec(name, help, GPU), True


# Per-GPU scalars: reading key -> (spec, is a counter), in the order served.
_SCALARS = (
    _gauge(
        "utilization_ratio",
        "aiops_gpu_utilization_ratio",
        "Share of the last sample period in which a kernel ran on the GPU, 0-1.",
    ),
    _gauge(
        "memory_utilization_ratio",
        "aiops_gpu_memory_utilization_ratio",
        "Share of the last sample period in which GPU memory was read or written, 0-1.",
    ),
    _gauge(
        "memory_used_bytes",
        "aiops_gpu_memory_used_bytes",
        "GPU memory allocated, in bytes.",
    ),
    _gauge(
        "memory_free_bytes",
        "aiops_gpu_memory_free_bytes",
        "GPU memory free, in bytes.",
    ),
    _gauge(
        "memory_total_bytes",
        "aiops_gpu_memory_total_bytes",
        "GPU memory installed, in bytes.",
    ),
    _gauge(
        "temperature_celsius",
        "aiops_gpu_temperature_celsius",
        "GPU core temperature, in degrees Celsius.",
    ),
    _gauge(
        "memory_temperature_celsius",
        "aiops_gpu_memory_temperature_celsius",
        "GPU memory (HBM) temperature, in degrees Celsius.",
    ),
    _gauge(
        "power_watts",
        "aiops_gpu_power_watts",
        "GPU board power draw, in watts.",
    ),
    _gauge(
        "power_limit_watts",
        "aiops_gpu_power_limit_watts",
        "GPU power limit in force, in watts.",
    ),
    _gauge(
        "power_limit_min_watts",
        "aiops_gpu_power_limit_min_watts",
        "Lowest power limit the GPU accepts, in watts.",
    ),
    _gauge(
        "power_limit_max_watts",
        "aiops_gpu_power_limit_max_watts",
        "Highest power limit the GPU accepts, in watts.",
    ),
    _counter(
        "energy_joules",
        "aiops_gpu_energy_joules_total",
        "Energy the GPU used since the driver loaded, in joules.",
    ),
    _gauge(
        "sm_clock_hertz",
        "aiops_gpu_sm_clock_hertz",
        "Current SM clock, in hertz.",
    ),
    _gauge(
        "memory_clock_hertz",
        "aiops_gpu_memory_clock_hertz",
        "Current memory clock, in hertz.",
    ),
    _gauge(
        "pcie_transmit_bytes_per_second",
        "aiops_gpu_pcie_transmit_bytes_per_second",
        "PCIe bytes sent by the GPU per second, sampled by the driver over 20 ms.",
    ),
    _gauge(
        "pcie_receive_bytes_per_second",
        "aiops_gpu_pcie_receive_bytes_per_second",
        "PCIe bytes received by the GPU per second, sampled by the driver over 20 ms.",
    ),
    _counter(
        "pcie_replays",
        "aiops_gpu_pcie_replays_total",
        "PCIe replays (retransmissions after link errors) of the GPU.",
    ),
    _gauge(
        "pcie_link_generation",
        "aiops_gpu_pcie_link_generation",
        "Current PCIe link generation.",
    ),
    _gauge(
        "pcie_link_width",
        "aiops_gpu_pcie_link_width",
        "Current PCIe link width, in lanes.",
    ),
    _counter(
        "nvlink_transmit_bytes",
        "aiops_gpu_nvlink_transmit_bytes_total",
        "Data bytes sent over all the GPU's NVLinks.",
    ),
    _counter(
        "nvlink_receive_bytes",
        "aiops_gpu_nvlink_receive_bytes_total",
        "Data bytes received over all the GPU's NVLinks.",
    ),
    _counter(
        "ecc_corrected_errors",
        "aiops_gpu_ecc_corrected_errors_total",
        "Corrected (single-bit) ECC errors over the GPU's life.",
    ),
    _counter(
        "ecc_uncorrected_errors",
        "aiops_gpu_ecc_uncorrected_errors_total",
        "Uncorrected (double-bit) ECC errors over the GPU's life.",
    ),
    _gauge(
        "retired_pages_pending",
        "aiops_gpu_retired_pages_pending",
        "1 when retired pages wait for a reset or reboot to take effect.",
    ),
    _gauge(
        "remapped_rows_pending",
        "aiops_gpu_remapped_rows_pending",
        "1 when remapped rows wait for a GPU reset to take effect.",
    ),
    _gauge(
        "remapped_rows_failed",
        "aiops_gpu_remapped_rows_failed",
        "1 when a row remapping failed; the GPU needs service.",
    ),
    _gauge(
        "performance_state",
        "aiops_gpu_performance_state",
        "Performance state, 0 (P0, most performance) to 15 (least).",
    ),
    _gauge(
        "persistence_mode_enabled",
        "aiops_gpu_persistence_mode_enabled",
        "1 when persistence mode is on.",
    ),
    _gauge(
        "mig_mode_enabled",
        "aiops_gpu_mig_mode_enabled",
        "1 when MIG mode is on.",
    ),
)


def gpu_families(sample: GpuSample) -> list[Metric]:
    """NVML availability and, when available, every GPU's series."""
    families: list[Metric] = [NVML_AVAILABLE.single(1 if sample.available else 0)]
    if sample.expected_count is not None:
        families.append(GPU_DEVICES_EXPECTED.single(sample.expected_count))
    if not sample.available:
        return families
    if sample.device_count is not None:
        families.append(GPU_DEVICES.single(sample.device_count))

    families.extend(non_empty(_identity_and_health(sample)))
    for key, spec, is_counter in _SCALARS:
        family = spec.counter() if is_counter else spec.gauge()
        for gpu in sample.gpus:
            value = gpu.values.get(key)
            if value is not None:
                family.add_metric(_labels(gpu), value)
        families.extend(non_empty([family]))
    families.extend(non_empty(_labelled(sample)))
    return families


def _identity_and_health(sample: GpuSample) -> list[Metric]:
    info, health, recovery, errors = (
        GPU_INFO.gauge(),
        GPU_HEALTH.gauge(),
        GPU_RECOVERY.gauge(),
        GPU_NVML_ERRORS.counter(),
    )
    for gpu in sample.gpus:
        info.add_metric(
            [
                *_labels(gpu),
                gpu.name,
                gpu.pci_bus_id,
                sample.driver_version,
                sample.cuda_version,
                gpu.serial,
            ],
            1,
        )
        if gpu.recovery_action is not None:
            recovery.add_metric([*_labels(gpu), gpu.recovery_action], 1)
    for state in sample.states:
        labels = [str(state.index), state.uuid]
        for name in HEALTH_STATES:
            health.add_metric([*labels, name], 1 if state.state == name else 0)
        errors.add_metric(labels, sample.errors.get(state.index, 0))
    return [info, health, recovery, errors]


def _labelled(sample: GpuSample) -> list[Metric]:
    reasons, nvlink, retired, remapped, fans = (
        CLOCK_REASON.gauge(),
        NVLINK_ERRORS.counter(),
        RETIRED_PAGES.gauge(),
        REMAPPED_ROWS.gauge(),
        FAN_SPEED.gauge(),
    )
    mig_info, mig_used, mig_total = (
        MIG_INFO.gauge(),
        MIG_MEMORY_USED.gauge(),
        MIG_MEMORY_TOTAL.gauge(),
    )
    for gpu in sample.gpus:
        labels = _labels(gpu)
        for reason, active in gpu.clock_reasons.items():
            reasons.add_metric([*labels, reason], active)
        for kind, count in gpu.nvlink_errors.items():
            nvlink.add_metric([*labels, kind], count)
        for cause, count in gpu.retired_pages.items():
            retired.add_metric([*labels, cause], count)
        for cause, count in gpu.remapped_rows.items():
            remapped.add_metric([*labels, cause], count)
        for fan, speed in gpu.fans.items():
            fans.add_metric([*labels, str(fan)], speed)
        for mig in gpu.mig:
            mig_labels = [*labels, str(mig.gpu_instance), str(mig.compute_instance)]
            mig_info.add_metric([*mig_labels, mig.uuid], 1)
            if mig.memory_used_bytes is not None:
                mig_used.add_metric(mig_labels, mig.memory_used_bytes)
            if mig.memory_total_bytes is not None:
                mig_total.add_metric(mig_labels, mig.memory_total_bytes)
    return [
        reasons,
        nvlink,
        retired,
        remapped,
        fans,
        mig_info,
        mig_used,
        mig_total,
    ]


def _labels(gpu: GpuReading) -> list[str]:
    return [str(gpu.index), gpu.uuid]
