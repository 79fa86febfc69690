"""A stand-in for the pynvml module: the functions the exporter calls, answering
from a fixture dict, and raising pynvml's own exception classes."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pynvml

# Values as an idle H100 SXM host reports them through NVML.
H100: dict[str, Any] = {
    "name": "NVIDIA H100 80GB HBM3",
    "uuid": "GPU-3b4c6a9e-5f21-8d07-c2e4-71a0f9d3b6c8",
    "pci_bus_id": "00000000:18:00.0",
    "memory_total": 85520809984,
    "memory_used": 566231040,
    "utilization_gpu": 0,
    "utilization_memory": 0,
    "temperature": 34,
    "power_usage_mw": 69876,
    "power_limit_mw": 700000,
}
DRIVER_VERSION = "550.54.15"


def h100_host(count: int = 2) -> dict[str, Any]:
    """A fixture of `count` H100s, differing in uuid, bus id and load."""
    gpus = []
    for index in range(count):
        gpu = copy.deepcopy(H100)
        gpu["uuid"] = f"{H100['uuid'][:-2]}{index:02d}"
        gpu["pci_bus_id"] = f"00000000:{0x18 + index * 0x20:02X}:00.0"
        gpu["utilization_gpu"] = 87 * index
        gpu["temperature"] = 34 + 17 * index
        gpus.append(gpu)
    return {"driver_version": DRIVER_VERSION, "gpus": gpus}


@dataclass(frozen=True)
class _Handle:
    index: int


class FakeNvml:
    """Answers like pynvml from `fixture`.

    missing: nvmlInit raises NVMLError_LibraryNotFound, as on a host without the
    driver. errors: function name -> NVML error code raised for every GPU, e.g.
    {"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_NOT_SUPPORTED}. lost: indices
    of GPUs whose handle calls raise NVMLError_GpuIsLost.
    """

    NVMLError = pynvml.NVMLError
    NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_GPU_IS_LOST = pynvml.NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_RESET_REQUIRED = pynvml.NVML_ERROR_RESET_REQUIRED
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def __init__(
        self,
        fixture: Mapping[str, Any],
        missing: bool = False,
        errors: Mapping[str, int] | None = None,
        lost: Iterable[int] = (),
    ) -> None:
        self.fixture = fixture
        self.missing = missing
        self.errors = dict(errors or {})
        self.lost = set(lost)
        self.initialized = False
        self.init_calls = 0

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.missing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self._check("nvmlShutdown")
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check("nvmlSystemGetDriverVersion")
        return self.fixture["driver_version"]

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.fixture["gpus"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._check("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.fixture["gpus"]):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(index)

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        return self._gpu("nvmlDeviceGetName", handle)["name"]

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        return self._gpu("nvmlDeviceGetUUID", handle)["uuid"]

    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> pynvml.nvmlPciInfo_t:
        gpu = self._gpu("nvmlDeviceGetPciInfo", handle)
        info = pynvml.nvmlPciInfo_t()
        info.busId = gpu["pci_bus_id"]
        return info

    def nvmlDeviceGetUtilizationRates(
        self, handle: _Handle
    ) -> pynvml.c_nvmlUtilization_t:
        gpu = self._gpu("nvmlDeviceGetUtilizationRates", handle)
        return pynvml.c_nvmlUtilization_t(
            gpu=gpu["utilization_gpu"], memory=gpu["utilization_memory"]
        )

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle) -> pynvml.c_nvmlMemory_t:
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", handle)
        total, used = gpu["memory_total"], gpu["memory_used"]
        return pynvml.c_nvmlMemory_t(total=total, free=total - used, used=used)

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTemperature", handle)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpu["temperature"]

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        return self._gpu("nvmlDeviceGetPowerUsage", handle)["power_usage_mw"]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        return self._gpu("nvmlDeviceGetEnforcedPowerLimit", handle)["power_limit_mw"]

    def _check(self, function: str) -> None:
        if not self.initialized:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if function in self.errors:
            raise pynvml.NVMLError(self.errors[function])

    def _gpu(self, function: str, handle: _Handle) -> dict[str, Any]:
        self._check(function)
        if handle.index in self.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return self.fixture["gpus"][handle.index]
