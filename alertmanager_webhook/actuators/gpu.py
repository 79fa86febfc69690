"""GPU power limit through NVML, within the range the board allows.

Needs the NVIDIA driver and pynvml (nvidia-ml-py); the module is injected, so
tests run with a fake. Reading the allowed range needs no privilege, setting a
limit needs root.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from alertmanager_webhook.actuators.base import ActuatorError, Outcome, Params, Plan
from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.templates import LabelError, safe_value

GPU_INDEX = re.compile(r"[0-9]{1,3}")
GPU_UUID = re.compile(r"GPU-[0-9a-fA-F-]{8,64}")

NvmlLoader = Callable[[], ModuleType]


def load_pynvml() -> ModuleType:
    return importlib.import_module("pynvml")


class GpuPowerLimit:
    """The `gpu_power_limit` action, on the GPU of the `gpu` or `gpu_uuid` label."""

    idempotent = True

    def __init__(self, nvml: NvmlLoader = load_pynvml) -> None:
        self._load = nvml

    def plan(
        self, labels: Mapping[str, str], policy: PolicyConfig, params: Params
    ) -> Plan:
        try:
            if "gpu_uuid" in labels:
                device = {"uuid": safe_value(labels, "gpu_uuid", GPU_UUID)}
            else:
                device = {"index": safe_value(labels, "gpu", GPU_INDEX)}
        except LabelError as exc:
            return Plan("", f"refused: {exc}", "refused")

        target = f"GPU {next(iter(device.values()))}"
        wanted_mw = round(float(params["power_watts"]) * 1000)
        try:
            with self._session() as (nvml, handle_of):
                handle = handle_of(device)
                low, high = nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
                now = nvml.nvmlDeviceGetPowerManagementLimit(handle)
        except ActuatorError as exc:
            return Plan(target, f"cannot read the power range: {exc}", "failed")

        limit = min(max(wanted_mw, low), high)
        clamp = "" if limit == wanted_mw else f" (asked {wanted_mw / 1000:g} W)"
        return Plan(
            target,
            f"set {target} power limit from {now / 1000:g} W to {limit / 1000:g} W"
            f"{clamp}, allowed {low / 1000:g}-{high / 1000:g} W",
            spec={"device": device, "milliwatts": limit},
        )

    def apply(self, spec: Mapping[str, Any]) -> Outcome:
        with self._session() as (nvml, handle_of):
            handle = handle_of(spec["device"])
            # Clamp again: the range is the board's, and may differ at apply time.
            low, high = nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
            before = nvml.nvmlDeviceGetPowerManagementLimit(handle)
            limit = min(max(int(spec["milliwatts"]), low), high)
            self._set(nvml, handle, limit)
        return Outcome(
            f"power limit {before / 1000:g} W -> {limit / 1000:g} W",
            {"device": spec["device"], "milliwatts": before},
        )

    def restore(self, undo: Mapping[str, Any]) -> str:
        with self._session() as (nvml, handle_of):
            self._set(nvml, handle_of(undo["device"]), int(undo["milliwatts"]))
        return f"power limit back to {int(undo['milliwatts']) / 1000:g} W"

    def _set(self, nvml: ModuleType, handle: Any, milliwatts: int) -> None:
        try:
            nvml.nvmlDeviceSetPowerManagementLimit(handle, milliwatts)
        except nvml.NVMLError as exc:
            raise ActuatorError(f"NVML refused the power limit: {exc}") from exc

    @contextmanager
    def _session(self) -> Iterator[tuple[ModuleType, Callable[[Any], Any]]]:
        try:
            nvml = self._load()
        except ImportError as exc:
            raise ActuatorError(f"pynvml is not installed: {exc}") from exc
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise ActuatorError(f"NVML unavailable: {exc}") from exc

        def handle_of(device: Mapping[str, str]) -> Any:
            if "uuid" in device:
                return nvml.nvmlDeviceGetHandleByUUID(device["uuid"])
            return nvml.nvmlDeviceGetHandleByIndex(int(device["index"]))

        try:
            yield nvml, handle_of
        except nvml.NVMLError as exc:
            raise ActuatorError(f"NVML: {exc}") from exc
        finally:
            nvml.nvmlShutdown()
