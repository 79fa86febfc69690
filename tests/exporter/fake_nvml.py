"""A stand-in for the pynvml module that replays fixtures in the format
tools/record_nvml_fixture.py writes, raising pynvml's own exception classes.

One fixture is one GPU model; the fake clones it into as many GPUs as asked,
each with its own uuid, bus id and serial. Tests then break it on purpose:
library missing, calls unsupported or failing, GPUs lost or needing a reset,
calls that hang, processes, utilization samples and Xid events.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pynvml

from exporter.nvml_fixture import VALUE_MEMBERS, call_key, decode, field_key

FIXTURES = Path(__file__).parent / "fixtures"
H100 = "nvidia-h100-80gb-hbm3"
H200 = "nvidia-h200"
# How long a hung call waits for its test to release it before giving up, so
# that a test that forgets cannot leave a thread behind for ever.
HANG_LIMIT = 30.0


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@dataclass(frozen=True)
class Handle:
    index: int
    mig: int | None = None


class FakeNvml:
    """Answers like pynvml from `fixture`, cloned into `count` GPUs.

    missing: nvmlInit raises NVMLError_LibraryNotFound. errors: function name ->
    NVML error code for every GPU, or (function, index) -> code for one. lost
    and reset_required: GPU indices whose every call fails so. hang: function
    name, or (function, index) for one GPU, -> Event the call waits on before
    answering.
    """

    NVMLError = pynvml.NVMLError

    def __init__(
        self,
        fixture: Mapping[str, Any],
        count: int = 2,
        missing: bool = False,
        errors: Mapping[Any, int] | None = None,
        lost: Iterable[int] = (),
        reset_required: Iterable[int] = (),
        hang: Mapping[str, threading.Event] | None = None,
    ) -> None:
        self.fixture = fixture
        self.devices = [_clone(fixture, index) for index in range(count)]
        self.missing = missing
        self.errors = dict(errors or {})
        self.lost = set(lost)
        self.reset_required = set(reset_required)
        self.hang: dict[Any, threading.Event] = dict(hang or {})
        self.processes: dict[int, list[tuple[int, int | None]]] = {}
        self.samples: dict[int, list[tuple[int, int, int]]] = {}
        self.process_names: dict[int, str] = {}
        self.events: list[tuple[int, int]] = []
        self.registered: set[int] = set()
        self.initialized = False
        self.init_calls = 0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        # Constants, structure types and error classes come from pynvml itself;
        # device queries replay the fixture.
        value = getattr(pynvml, name)
        if name.startswith("nvmlDevice") and callable(value):
            return functools.partial(self._device_call, name)
        if name.startswith("nvmlSystem") and callable(value):
            return functools.partial(self._system_call, name)
        if name.startswith("nvml") and callable(value) and not isinstance(value, type):
            raise AttributeError(f"FakeNvml does not implement {name}")
        return value

    def set(self, index: int, call: str, value: Any) -> None:
        """Change the answer of one call on GPU `index`, e.g. a new power draw."""
        self.devices[index]["device"][call] = {"value": value}

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.missing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self._check("nvmlShutdown")
        self.initialized = False

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle:
        self._check("nvmlDeviceGetHandleByIndex", index)
        if not 0 <= index < len(self.devices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return Handle(index)

    def nvmlDeviceGetIndex(self, handle: Handle) -> int:
        self._check("nvmlDeviceGetIndex")
        return handle.index

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Handle, slot: int) -> Handle:
        _answer(self._replay("nvmlDeviceGetMigDeviceHandleByIndex", handle, slot))
        return Handle(handle.index, slot)

    def nvmlDeviceGetFieldValues(self, handle: Handle, requests: list[Any]) -> Any:
        self._check("nvmlDeviceGetFieldValues", handle.index)
        known = self.devices[handle.index]["fields"]
        values = (pynvml.c_nvmlFieldValue_t * len(requests))()
        for value, request in zip(values, requests, strict=True):
            key = field_key(request)
            assert key in known, f"fixture lacks field {key}; record it again"
            answer = known[key]
            if "error" in answer:
                value.nvmlReturn = getattr(pynvml, answer["error"])
                continue
            value.nvmlReturn = 0
            value.valueType = answer["type"]
            setattr(value.value, VALUE_MEMBERS[answer["type"]], answer["value"])
        return values

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Handle) -> list[Any]:
        if handle.index not in self.processes:
            return self._device_call("nvmlDeviceGetComputeRunningProcesses", handle)
        self._check("nvmlDeviceGetComputeRunningProcesses", handle.index)
        return [
            pynvml.nvmlFriendlyObject(
                {
                    "pid": pid,
                    "usedGpuMemory": used,
                    "gpuInstanceId": 0xFFFFFFFF,
                    "computeInstanceId": 0xFFFFFFFF,
                }
            )
            for pid, used in self.processes[handle.index]
        ]

    def nvmlDeviceGetProcessUtilization(self, handle: Handle, since: int) -> list:
        if handle.index not in self.samples | self.processes:
            return self._device_call("nvmlDeviceGetProcessUtilization", handle, since)
        # Processes a test made up ran no kernels unless it gave samples too.
        self._check("nvmlDeviceGetProcessUtilization", handle.index)
        newer = [
            pynvml.c_nvmlProcessUtilizationSample_t(
                pid=pid, timeStamp=stamp, smUtil=sm, memUtil=0, encUtil=0, decUtil=0
            )
            for pid, stamp, sm in self.samples.get(handle.index, [])
            if stamp > since
        ]
        if not newer:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return newer

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        self._check("nvmlSystemGetProcessName")
        if pid in self.process_names:
            return self.process_names[pid]
        return self._system_call("nvmlSystemGetProcessName", pid)

    def nvmlEventSetCreate(self) -> str:
        self._check("nvmlEventSetCreate")
        return "event-set"

    def nvmlDeviceRegisterEvents(self, handle: Handle, types: int, _set: Any) -> None:
        self._check("nvmlDeviceRegisterEvents", handle.index)
        self.registered.add(handle.index)

    def nvmlEventSetWait(self, _set: Any, timeout_ms: int) -> Any:
        # Never sleeps: an empty queue answers at once as a timed-out wait.
        self._check("nvmlEventSetWait")
        if not self.events:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
        index, xid = self.events.pop(0)
        return _Event(Handle(index), pynvml.nvmlEventTypeXidCriticalError, xid)

    def _device_call(self, name: str, handle: Handle, *args: Any) -> Any:
        return _answer(self._replay(name, handle, *args))

    def _replay(self, name: str, handle: Handle, *args: Any) -> Any:
        self._check(name, handle.index)
        device = self.devices[handle.index]
        calls = device["device"] if handle.mig is None else device["mig"][handle.mig]
        key = call_key(name, args)
        assert key in calls, f"fixture lacks {key}; record it again"
        return calls[key]

    def _system_call(self, name: str, *args: Any) -> Any:
        self._check(name)
        key = call_key(name, args)
        assert key in self.fixture["system"], f"fixture lacks {key}; record it again"
        return _answer(self.fixture["system"][key])

    def _check(self, function: str, index: int | None = None) -> None:
        self.calls += 1
        hang = self.hang.get((function, index), self.hang.get(function))
        if hang is not None:
            hang.wait(HANG_LIMIT)
        if not self.initialized:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        code = self.errors.get((function, index), self.errors.get(function))
        if code is not None:
            raise pynvml.NVMLError(code)
        if index in self.lost and function != "nvmlDeviceGetHandleByIndex":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if index in self.reset_required and function != "nvmlDeviceGetHandleByIndex":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_RESET_REQUIRED)


@dataclass(frozen=True)
class _Event:
    device: Handle
    eventType: int
    eventData: int


def _answer(entry: Mapping[str, Any]) -> Any:
    if "error" in entry:
        raise pynvml.NVMLError(getattr(pynvml, entry["error"]))
    # decode() builds new structures and lists; scalars cannot be changed.
    return decode(entry["value"], pynvml)


def _clone(fixture: Mapping[str, Any], index: int) -> dict[str, Any]:
    """GPU `index` of a host of this model: same answers, its own identity."""
    device = copy.deepcopy(dict(fixture["device"]))
    uuid = device["nvmlDeviceGetUUID()"]["value"]
    device["nvmlDeviceGetUUID()"]["value"] = f"{uuid[:-2]}{index:02x}"
    pci = device["nvmlDeviceGetPciInfo()"]["value"]
    bus = pci["bus"] + 0x20 * index
    pci["bus"] = bus
    pci["busId"] = f"{pci['domain']:08X}:{bus:02X}:{pci['device']:02X}.0"
    pci["busIdLegacy"] = f"{pci['domain']:04X}:{bus:02X}:{pci['device']:02X}.0"
    serial = device.get("nvmlDeviceGetSerial()", {})
    if "value" in serial:
        serial["value"] = f"{serial['value'][:-2]}{index:02d}"
    return {
        "device": device,
        "fields": copy.deepcopy(dict(fixture.get("fields", {}))),
        "mig": copy.deepcopy(list(fixture.get("mig", []))),
    }
