"""The one NVML session the GPU, GPU-process and Xid readers share.

Needs the NVIDIA driver (libnvidia-ml.so.1) and pynvml; without them start()
returns None, is tried again on later calls, and warns once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from exporter.once import Once

log = logging.getLogger(__name__)

HEALTHY, LOST, RESET_REQUIRED = "healthy", "lost", "reset_required"
# A GPU whose read did not return within its time limit: hung in the driver.
NOT_RESPONDING = "not_responding"

# Codes that mean "this GPU, driver or caller cannot give this value": the
# field is left out, as unsupported fields must be, rather than failing.
_ABSENT = (
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_ERROR_NO_PERMISSION",
    "NVML_ERROR_FUNCTION_NOT_FOUND",
    "NVML_ERROR_NOT_FOUND",
    "NVML_ERROR_NO_DATA",
)


class GpuGone(Exception):
    """A GPU stopped answering: `state` is LOST or RESET_REQUIRED."""

    def __init__(self, state: str, detail: str) -> None:
        super().__init__(detail)
        self.state = state


class NvmlCallError(Exception):
    """An NVML call failed in a way that is neither 'unsupported' nor 'lost'."""

    def __init__(self, function: str, code: int, detail: str) -> None:
        super().__init__(f"{function}: {detail}")
        self.function = function
        self.code = code


@dataclass(frozen=True)
class GpuIdentity:
    """What the readers need to label a GPU they only know by index or bus."""

    index: int
    uuid: str
    pci_bus_id: str
    mig_uuids: tuple[str, ...] = ()


def import_pynvml() -> ModuleType:
    """Import pynvml on first use, so that importing the exporter needs no driver."""
    import pynvml

    return pynvml


class NvmlSession:
    """Starts NVML lazily and thread-safely; call() classifies NVML's errors."""

    def __init__(self, load_nvml: Callable[[], Any] = import_pynvml) -> None:
        self._load_nvml = load_nvml
        self._nvml: Any = None
        self._handles: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._once = Once(log)
        # Written by the GPU reader each cycle, read by the other readers.
        self.identities: dict[int, GpuIdentity] = {}

    def start(self) -> Any:
        """The NVML module once initialised, or None while it cannot start."""
        with self._lock:
            if self._nvml is not None:
                return self._nvml
            try:
                nvml = self._load_nvml()
                nvml.nvmlInit()
            except ImportError as exc:
                return self._unavailable(exc)
            except Exception as exc:  # pynvml's NVMLError, whatever module gave it
                if not _is_nvml_error(exc):
                    raise
                return self._unavailable(exc)
            self._nvml = nvml
            self._handles = {}

        if self._once.forget("unavailable"):
            log.info("NVML available again")
        log.info("NVML started")
        return nvml

    def device_count(self) -> int:
        nvml = self._nvml
        return int(nvml.nvmlDeviceGetCount())

    def handle(self, index: int) -> Any:
        """The device handle of GPU `index`; raises GpuGone for a lost GPU."""
        handle = self._handles.get(index)
        if handle is None:
            handle = self.call("nvmlDeviceGetHandleByIndex", index)
            self._handles[index] = handle
        return handle

    def call(self, function: str, *args: Any) -> Any:
        """Call NVML: None where unsupported, GpuGone for a lost GPU."""
        nvml = self._nvml
        fn = getattr(nvml, function, None)
        if fn is None:
            # An older pynvml than the driver: the value is simply not there.
            return None
        try:
            return fn(*args)
        except nvml.NVMLError as exc:
            error = self.classify(function, exc)
            if error is None:
                return None
            raise error from exc

    def classify(self, function: str, exc: Any) -> Exception | None:
        """The exception to raise for NVMLError `exc`, or None for 'absent'."""
        nvml = self._nvml
        code = exc.value
        if code == nvml.NVML_ERROR_GPU_IS_LOST:
            return GpuGone(LOST, str(exc))
        if code == nvml.NVML_ERROR_RESET_REQUIRED:
            return GpuGone(RESET_REQUIRED, str(exc))
        if code in {getattr(nvml, name, None) for name in _ABSENT}:
            return None
        return NvmlCallError(function, code, str(exc))

    def close(self) -> None:
        """End the NVML session, if one was started."""
        with self._lock:
            nvml, self._nvml = self._nvml, None
            self._handles = {}
        if nvml is None:
            return
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as exc:
            log.debug("nvmlShutdown failed error=%s", exc)

    @property
    def nvml(self) -> Any:
        """The started module, or None; for readers that skip when NVML is down."""
        return self._nvml

    def _unavailable(self, exc: Exception) -> None:
        # Tried again every cycle, since the driver may be loaded later.
        self._once.log(
            logging.WARNING,
            "unavailable",
            "NVML unavailable, serving no GPU metrics error=%r; install the NVIDIA "
            "driver (libnvidia-ml.so.1) and load its kernel module, or run the "
            "exporter where the GPUs are visible",
            str(exc),
        )
        return None


def _is_nvml_error(exc: Exception) -> bool:
    return any(cls.__name__ == "NVMLError" for cls in type(exc).__mro__)
