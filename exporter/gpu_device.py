"""Reads the full state of one GPU through NVML into a GpuReading, in base units.

A field this GPU, driver or pynvml cannot give is left out of the reading; a
call that fails otherwise is recorded in `errors` and leaves its field out too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.nvml_session import GpuGone, NvmlCallError, NvmlSession

# Scalar readings: (key, function, arguments, factor). Arguments that are
# strings name pynvml constants. NVML gives power in milliwatts, energy in
# millijoules, clocks in MHz, percentages as 0-100 and PCIe throughput in KB/s,
# taken as KiB/s like the NVLink counters, which nvml.h states in KiB.
_SCALARS: tuple[tuple[str, str, tuple[Any, ...], float], ...] = (
    ("temperature_celsius", "nvmlDeviceGetTemperature", ("NVML_TEMPERATURE_GPU",), 1),
    ("power_watts", "nvmlDeviceGetPowerUsage", (), 1e-3),
    ("power_limit_watts", "nvmlDeviceGetEnforcedPowerLimit", (), 1e-3),
    ("energy_joules", "nvmlDeviceGetTotalEnergyConsumption", (), 1e-3),
    ("sm_clock_hertz", "nvmlDeviceGetClockInfo", ("NVML_CLOCK_SM",), 1e6),
    ("memory_clock_hertz", "nvmlDeviceGetClockInfo", ("NVML_CLOCK_MEM",), 1e6),
    (
        "pcie_transmit_bytes_per_second",
        "nvmlDeviceGetPcieThroughput",
        ("NVML_PCIE_UTIL_TX_BYTES",),
        1024,
    ),
    (
        "pcie_receive_bytes_per_second",
        "nvmlDeviceGetPcieThroughput",
        ("NVML_PCIE_UTIL_RX_BYTES",),
        1024,
    ),
    ("pcie_replays", "nvmlDeviceGetPcieReplayCounter", (), 1),
    ("pcie_link_generation", "nvmlDeviceGetCurrPcieLinkGeneration", (), 1),
    ("pcie_link_width", "nvmlDeviceGetCurrPcieLinkWidth", (), 1),
    ("persistence_mode_enabled", "nvmlDeviceGetPersistenceMode", (), 1),
    (
        "ecc_corrected_errors",
        "nvmlDeviceGetTotalEccErrors",
        ("NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_AGGREGATE_ECC"),
        1,
    ),
    (
        "ecc_uncorrected_errors",
        "nvmlDeviceGetTotalEccErrors",
        ("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_AGGREGATE_ECC"),
        1,
    ),
    ("retired_pages_pending", "nvmlDeviceGetRetiredPagesPendingStatus", (), 1),
)

# Clock event ("throttle") reasons, bit values from nvml.h, which keeps them
# stable across driver versions; pynvml renamed the constants once already.
CLOCK_REASONS = (
    ("gpu_idle", 0x1),
    ("applications_clocks_setting", 0x2),
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("sync_boost", 0x10),
    ("sw_thermal_slowdown", 0x20),
    ("hw_thermal_slowdown", 0x40),
    ("hw_power_brake_slowdown", 0x80),
    ("display_clock_setting", 0x100),
)

RECOVERY_ACTIONS = {
    0: "none",
    1: "gpu_reset",
    2: "node_reboot",
    3: "drain_p2p",
    4: "drain_and_reset",
}

# All-links scope: nvml.h sums an NVLink throughput field over every link when
# its scopeId is UINT_MAX.
_ALL_LINKS = 0xFFFFFFFF
# Field values: (field constant, scope or None, where it goes, key, factor).
_FIELDS = (
    ("NVML_FI_DEV_MEMORY_TEMP", None, "values", "memory_temperature_celsius", 1),
    (
        "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX",
        _ALL_LINKS,
        "values",
        "nvlink_transmit_bytes",
        1024,
    ),
    (
        "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX",
        _ALL_LINKS,
        "values",
        "nvlink_receive_bytes",
        1024,
    ),
    ("NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", None, "nvlink", "crc_flit", 1),
    ("NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", None, "nvlink", "crc_data", 1),
    ("NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", None, "nvlink", "replay", 1),
    ("NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", None, "nvlink", "recovery", 1),
    ("NVML_FI_DEV_NVLINK_ECC_DATA_ERROR_COUNT_TOTAL", None, "nvlink", "ecc_data", 1),
    ("NVML_FI_DEV_GET_GPU_RECOVERY_ACTION", None, "recovery", "action", 1),
)
# c_nvmlValue_t's member for each nvmlValueType_t.
_VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")
_PSTATE_UNKNOWN = 32


@dataclass(frozen=True)
class MigInstance:
    """One MIG device of a GPU in MIG mode."""

    gpu_instance: int
    compute_instance: int
    uuid: str
    memory_used_bytes: int | None
    memory_total_bytes: int | None


@dataclass(frozen=True)
class GpuReading:
    """One GPU; a key missing from a mapping is a value NVML does not give."""

    index: int
    uuid: str
    name: str
    pci_bus_id: str
    serial: str = ""
    values: Mapping[str, float] = field(default_factory=dict)
    clock_reasons: Mapping[str, int] = field(default_factory=dict)
    nvlink_errors: Mapping[str, float] = field(default_factory=dict)
    retired_pages: Mapping[str, int] = field(default_factory=dict)
    remapped_rows: Mapping[str, int] = field(default_factory=dict)
    fans: Mapping[int, float] = field(default_factory=dict)
    mig: tuple[MigInstance, ...] = ()
    recovery_action: str | None = None
    errors: tuple[NvmlCallError, ...] = ()


class DeviceReader:
    """Reads one GPU per call; raises GpuGone when the GPU stops answering."""

    def __init__(self, session: NvmlSession) -> None:
        self._session = session

    def read(self, index: int) -> GpuReading:
        return _Read(self._session, index).run()


class _Read:
    """One GPU's reading in progress, collecting the calls that failed."""

    def __init__(self, session: NvmlSession, index: int) -> None:
        self.session = session
        self.nvml = session.nvml
        self.index = index
        self.errors: list[NvmlCallError] = []
        self.values: dict[str, float] = {}

    def get(self, function: str, *args: Any) -> Any:
        try:
            return self.session.call(function, *args)
        except NvmlCallError as exc:
            self.errors.append(exc)
            return None

    def run(self) -> GpuReading:
        handle = self.session.handle(self.index)
        uuid = self.get("nvmlDeviceGetUUID", handle) or ""
        pci = self.get("nvmlDeviceGetPciInfo", handle)

        self._utilization_and_memory(handle)
        for key, function, args, factor in _SCALARS:
            resolved = [
                getattr(self.nvml, a) if isinstance(a, str) else a for a in args
            ]
            value = self.get(function, handle, *resolved)
            if value is not None:
                self.values[key] = value * factor
        self._power_limit_range(handle)
        pstate = self.get("nvmlDeviceGetPerformanceState", handle)
        if pstate is not None and pstate != _PSTATE_UNKNOWN:
            self.values["performance_state"] = pstate
        fields = self._fields(handle)
        mig_mode = self.get("nvmlDeviceGetMigMode", handle)
        if mig_mode is not None:
            self.values["mig_mode_enabled"] = mig_mode[0]

        action = fields["recovery"].get("action")
        return GpuReading(
            index=self.index,
            uuid=uuid,
            name=self.get("nvmlDeviceGetName", handle) or "",
            pci_bus_id=pci.busId if pci is not None else "",
            serial=self.get("nvmlDeviceGetSerial", handle) or "",
            values=self.values,
            clock_reasons=self._clock_reasons(handle),
            nvlink_errors=fields["nvlink"],
            retired_pages=self._retired_pages(handle),
            remapped_rows=self._remapped_rows(handle),
            fans=self._fans(handle),
            mig=self._mig(handle) if mig_mode and mig_mode[0] else (),
            recovery_action=(
                None if action is None else RECOVERY_ACTIONS.get(int(action), "other")
            ),
            errors=tuple(self.errors),
        )

    def _utilization_and_memory(self, handle: Any) -> None:
        utilization = self.get("nvmlDeviceGetUtilizationRates", handle)
        if utilization is not None:
            self.values["utilization_ratio"] = utilization.gpu / 100
            self.values["memory_utilization_ratio"] = utilization.memory / 100
        memory = self.get("nvmlDeviceGetMemoryInfo", handle)
        if memory is not None:
            self.values["memory_used_bytes"] = memory.used
            self.values["memory_free_bytes"] = memory.free
            self.values["memory_total_bytes"] = memory.total

    def _power_limit_range(self, handle: Any) -> None:
        # The range a power limit may be set to, one call for both ends, in
        # milliwatts; the optimizer keeps its recommendations inside it.
        limits = self.get("nvmlDeviceGetPowerManagementLimitConstraints", handle)
        if limits is None:
            return
        low, high = limits
        self.values["power_limit_min_watts"] = low * 1e-3
        self.values["power_limit_max_watts"] = high * 1e-3

    def _fans(self, handle: Any) -> dict[int, float]:
        # NVML gives a fan's intended speed in percent of its maximum; nvml.h
        # warns it may exceed 100, so it is passed on as it comes.
        count = self.get("nvmlDeviceGetNumFans", handle)
        if count is None:
            # Drivers without nvmlDeviceGetNumFans know only the first fan.
            speed = self.get("nvmlDeviceGetFanSpeed", handle)
            return {} if speed is None else {0: speed / 100}
        speeds = {
            fan: self.get("nvmlDeviceGetFanSpeed_v2", handle, fan)
            for fan in range(count)
        }
        return {fan: speed / 100 for fan, speed in speeds.items() if speed is not None}

    def _clock_reasons(self, handle: Any) -> dict[str, int]:
        active = self.get("nvmlDeviceGetCurrentClocksEventReasons", handle)
        if active is None:
            active = self.get("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        if active is None:
            return {}
        supported = self.get("nvmlDeviceGetSupportedClocksEventReasons", handle)
        if supported is None:
            supported = self.get("nvmlDeviceGetSupportedClocksThrottleReasons", handle)
        if supported is None:
            supported = ~0
        return {
            name: 1 if active & bit else 0
            for name, bit in CLOCK_REASONS
            if supported & bit
        }

    def _fields(self, handle: Any) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {"values": {}, "nvlink": {}, "recovery": {}}
        wanted = []
        for constant, scope, place, key, factor in _FIELDS:
            field_id = getattr(self.nvml, constant, None)
            if field_id is not None:
                request = field_id if scope is None else (field_id, scope)
                wanted.append((request, place, key, factor))
        if not wanted:
            return out

        results = self.get(
            "nvmlDeviceGetFieldValues", handle, [request for request, *_ in wanted]
        )
        for (_, place, key, factor), result in zip(wanted, results or (), strict=False):
            if result.nvmlReturn != 0:
                error = self.session.classify(
                    "nvmlDeviceGetFieldValues", self.nvml.NVMLError(result.nvmlReturn)
                )
                if isinstance(error, GpuGone):
                    raise error
                if error is not None:
                    self.errors.append(error)
                continue
            value = getattr(result.value, _VALUE_MEMBERS[result.valueType])
            out[place][key] = value * factor
        self.values.update(out["values"])
        return out

    def _retired_pages(self, handle: Any) -> dict[str, int]:
        # Pages retired for repeated single-bit errors and for double-bit ones;
        # GPUs from Ampere on remap rows instead and say "not supported" here.
        causes = (
            (
                "multiple_single_bit",
                "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS",
            ),
            ("double_bit", "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR"),
        )
        out = {}
        for name, constant in causes:
            pages = self.get(
                "nvmlDeviceGetRetiredPages", handle, getattr(self.nvml, constant)
            )
            if pages is not None:
                out[name] = len(pages)
        return out

    def _remapped_rows(self, handle: Any) -> dict[str, int]:
        rows = self.get("nvmlDeviceGetRemappedRows", handle)
        if rows is None:
            return {}
        correctable, uncorrectable, pending, failed = rows
        self.values["remapped_rows_pending"] = 1 if pending else 0
        self.values["remapped_rows_failed"] = 1 if failed else 0
        return {"correctable": correctable, "uncorrectable": uncorrectable}

    def _mig(self, handle: Any) -> tuple[MigInstance, ...]:
        count = self.get("nvmlDeviceGetMaxMigDeviceCount", handle) or 0
        instances = []
        for slot in range(count):
            mig = self.get("nvmlDeviceGetMigDeviceHandleByIndex", handle, slot)
            if mig is None:
                continue
            memory = self.get("nvmlDeviceGetMemoryInfo", mig)
            instances.append(
                MigInstance(
                    gpu_instance=self.get("nvmlDeviceGetGpuInstanceId", mig) or 0,
                    compute_instance=self.get("nvmlDeviceGetComputeInstanceId", mig)
                    or 0,
                    uuid=self.get("nvmlDeviceGetUUID", mig) or "",
                    memory_used_bytes=None if memory is None else memory.used,
                    memory_total_bytes=None if memory is None else memory.total,
                )
            )
        return tuple(instances)
