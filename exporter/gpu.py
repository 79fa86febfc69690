"""Reads GPU identity, utilization, memory, temperature and power through NVML.

Needs the NVIDIA driver (libnvidia-ml.so.1) and pynvml; without them it reports
NVML as unavailable and no GPUs, and the exporter keeps serving everything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuReading:
    """One GPU; a None field is one NVML does not support on this GPU."""

    index: int
    uuid: str
    name: str
    pci_bus_id: str
    utilization_ratio: float | None
    memory_utilization_ratio: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_celsius: float | None
    power_watts: float | None
    power_limit_watts: float | None


@dataclass(frozen=True)
class GpuSample:
    """All readable GPUs; `available` is False when NVML could not start."""

    available: bool
    driver_version: str = ""
    gpus: tuple[GpuReading, ...] = ()
    lost: tuple[int, ...] = ()


class _GpuLost(Exception):
    """A GPU stopped answering; the rest of the GPUs are still read."""


def import_pynvml() -> ModuleType:
    """Import pynvml on first use, so that importing the exporter needs no driver."""
    import pynvml

    return pynvml


class GpuReader:
    """Holds the NVML session; call read() from one thread at a time."""

    def __init__(self, load_nvml: Callable[[], Any] = import_pynvml) -> None:
        self._load_nvml = load_nvml
        self._nvml: Any = None
        self._warned = False
        self._lost: set[int] = set()

    def read(self) -> GpuSample:
        """Start NVML if it is not running yet, then read every GPU."""
        nvml = self._start()
        if nvml is None:
            return GpuSample(available=False)

        driver = _call(nvml, nvml.nvmlSystemGetDriverVersion) or ""
        gpus, lost = [], []
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                gpus.append(self._read_gpu(nvml, index))
            except _GpuLost as exc:
                lost.append(index)
                self._note_lost(index, exc)
                continue
            if index in self._lost:
                self._lost.discard(index)
                log.info("GPU answers again gpu=%s", index)

        return GpuSample(
            available=True, driver_version=driver, gpus=tuple(gpus), lost=tuple(lost)
        )

    def close(self) -> None:
        """End the NVML session, if one was started."""
        if self._nvml is None:
            return
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            log.debug("nvmlShutdown failed error=%s", exc)
        self._nvml = None

    def _start(self) -> Any:
        if self._nvml is not None:
            return self._nvml

        try:
            nvml = self._load_nvml()
        except ImportError as exc:
            return self._unavailable(exc)
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            return self._unavailable(exc)

        self._nvml = nvml
        log.info("NVML started")
        return nvml

    def _unavailable(self, exc: Exception) -> None:
        # Tried again every cycle, since the driver may be loaded later; warned
        # about once, since every cycle would say the same.
        if self._warned:
            log.debug("NVML still unavailable error=%s", exc)
            return
        self._warned = True
        log.warning(
            "NVML unavailable, serving no GPU metrics error=%r; install the NVIDIA "
            "driver (libnvidia-ml.so.1) and load its kernel module, or run the "
            "exporter where the GPUs are visible",
            str(exc),
        )

    def _read_gpu(self, nvml: Any, index: int) -> GpuReading:
        handle = _call(nvml, nvml.nvmlDeviceGetHandleByIndex, index)
        pci = _call(nvml, nvml.nvmlDeviceGetPciInfo, handle)
        utilization = _call(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = _call(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
        temperature = _call(
            nvml, nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
        )
        power = _call(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
        limit = _call(nvml, nvml.nvmlDeviceGetEnforcedPowerLimit, handle)

        # NVML gives utilization in percent and power in milliwatts.
        return GpuReading(
            index=index,
            uuid=_call(nvml, nvml.nvmlDeviceGetUUID, handle) or "",
            name=_call(nvml, nvml.nvmlDeviceGetName, handle) or "",
            pci_bus_id=pci.busId if pci is not None else "",
            utilization_ratio=None if utilization is None else utilization.gpu / 100,
            memory_utilization_ratio=(
                None if utilization is None else utilization.memory / 100
            ),
            memory_used_bytes=None if memory is None else memory.used,
            memory_total_bytes=None if memory is None else memory.total,
            temperature_celsius=None if temperature is None else float(temperature),
            power_watts=None if power is None else power / 1000,
            power_limit_watts=None if limit is None else limit / 1000,
        )

    def _note_lost(self, index: int, exc: _GpuLost) -> None:
        if index in self._lost:
            log.debug("GPU still lost gpu=%s error=%s", index, exc)
            return
        self._lost.add(index)
        log.warning("GPU lost, skipping it gpu=%s error=%s", index, exc)


def _call(nvml: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Call one NVML function: None where unsupported, _GpuLost for a lost GPU."""
    lost_codes = (nvml.NVML_ERROR_GPU_IS_LOST, nvml.NVML_ERROR_RESET_REQUIRED)
    try:
        return fn(*args)
    except nvml.NVMLError as exc:
        if exc.value == nvml.NVML_ERROR_NOT_SUPPORTED:
            return None
        if exc.value in lost_codes:
            raise _GpuLost(str(exc)) from exc
        raise
