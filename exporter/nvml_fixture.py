"""The NVML fixture format: every NVML call the exporter makes on a GPU, with its
answer or error, as JSON. Holds the recording proxy the recorder script wraps
around pynvml and the codec the tests' fake NVML replays from.

A fixture is one GPU model: {"format", "metadata", "system": {call: answer},
"device": {call: answer}, "fields": {"id" or "id:scope": answer},
"mig": [{call: answer}, ...]}. A call is "nvmlDeviceGetClockInfo(1)": the
function and its arguments after the device handle; an answer is {"value": ...}
or {"error": "NVML_ERROR_NOT_SUPPORTED"}. Structures are {"_struct": type,
field: value, ...}.
"""

from __future__ import annotations

import ctypes
import functools
import json
import sys
from collections.abc import Sequence
from typing import Any

FORMAT = 1

# Arguments that differ on every call (a timestamp) are left out of the key.
_VARYING = {"nvmlDeviceGetProcessUtilization"}
# Calls that change or wait on NVML's state rather than read it.
_NOT_RECORDED = {
    "nvmlInit",
    "nvmlInitWithFlags",
    "nvmlShutdown",
    "nvmlEventSetCreate",
    "nvmlEventSetFree",
    "nvmlEventSetWait",
    "nvmlEventSetWait_v2",
    "nvmlDeviceRegisterEvents",
}
_HANDLE_MAKERS = {"nvmlDeviceGetHandleByIndex", "nvmlDeviceGetMigDeviceHandleByIndex"}
# c_nvmlValue_t's member for each nvmlValueType_t.
VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")


def call_key(function: str, args: Sequence[Any]) -> str:
    """'nvmlDeviceGetTotalEccErrors(0, 1)': a call without its device handle."""
    if function in _VARYING:
        args = ()
    return f"{function}({', '.join(json.dumps(_plain(a)) for a in args)})"


def field_key(request: Any) -> str:
    """'82' for a field id, '138:4294967295' for (field id, scope id)."""
    if isinstance(request, tuple | list):
        return f"{request[0]}:{request[1]}"
    return str(request)


def encode(value: Any) -> Any:
    """A JSON-able form of an NVML answer."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, ctypes.Structure):
        out = {"_struct": type(value).__name__}
        for name, *_ in value._fields_:
            out[name] = encode(getattr(value, name))
        return out
    if isinstance(value, ctypes.Array):
        return [encode(v) for v in value]
    if isinstance(value, ctypes._Pointer):
        return None
    if hasattr(value, "__dict__"):
        # pynvml's nvmlFriendlyObject, which process lists come as.
        return {"_struct": "nvmlFriendlyObject", **encode(vars(value))}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    raise TypeError(f"cannot encode NVML answer {value!r}")


def decode(value: Any, nvml: Any) -> Any:
    """The object pynvml would have returned for an encoded answer."""
    if isinstance(value, list):
        return [decode(v, nvml) for v in value]
    if not isinstance(value, dict) or "_struct" not in value:
        return value
    fields = {k: decode(v, nvml) for k, v in value.items() if k != "_struct"}
    cls = getattr(nvml, value["_struct"], None)
    if isinstance(cls, type) and issubclass(cls, ctypes.Structure):
        struct = cls()
        for name, field_value in fields.items():
            setattr(struct, name, field_value)
        return struct
    return nvml.nvmlFriendlyObject(fields)


def error_name(nvml: Any, code: int) -> str:
    """'NVML_ERROR_NOT_SUPPORTED' for its code, as the fixture writes errors."""
    # The constants live in the module that defines NVMLError, which is not
    # the object handed in when that is a wrapper around pynvml.
    module = sys.modules.get(nvml.NVMLError.__module__, nvml)
    for name in dir(module):
        if name.startswith("NVML_ERROR_") and getattr(module, name) == code:
            return name
    return f"NVML_ERROR_{code}"


class RecordingNvml:
    """Wraps pynvml and writes down every read call's answer, per GPU."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self.system: dict[str, Any] = {}
        self.devices: dict[int, dict[str, Any]] = {}
        self._scopes: dict[int, tuple[int, int | None]] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._nvml, name)
        if not name.startswith("nvml") or isinstance(attr, type) or not callable(attr):
            return attr
        return functools.partial(self._call, name, attr)

    def device_fixture(self, index: int) -> dict[str, Any]:
        """The calls, fields and MIG devices recorded for GPU `index`."""
        device = self.devices.get(index, {})
        slots = device.get("mig", {})
        return {
            "device": device.get("calls", {}),
            "fields": device.get("fields", {}),
            "mig": [slots[slot] for slot in sorted(slots)],
        }

    def _call(self, name: str, fn: Any, *args: Any) -> Any:
        scope = self._scopes.get(_handle_key(args[0])) if args else None
        rest = args[1:] if scope is not None else args
        try:
            result = fn(*args)
        except self._nvml.NVMLError as exc:
            self._record(
                name, scope, rest, {"error": error_name(self._nvml, exc.value)}
            )
            raise

        if name in _HANDLE_MAKERS:
            index = args[0] if scope is None else scope[0]
            slot = None if scope is None else args[1]
            self._scopes[_handle_key(result)] = (index, slot)
            if scope is None:
                # The fake makes its own handles; only whether a MIG slot holds
                # a device is worth keeping.
                return result
            answer: Any = {"value": {"_handle": True}}
        elif name == "nvmlDeviceGetFieldValues":
            self._record_fields(scope, rest[0], result)
            return result
        else:
            answer = {"value": encode(result)}
        self._record(name, scope, rest, answer)
        return result

    def _record(
        self, name: str, scope: tuple[int, int | None] | None, args: Any, answer: Any
    ) -> None:
        if name in _NOT_RECORDED:
            return
        key = call_key(name, args)
        if scope is None:
            self.system[key] = answer
            return
        device = self.devices.setdefault(scope[0], {"calls": {}, "fields": {}})
        if scope[1] is None:
            device["calls"][key] = answer
        else:
            device.setdefault("mig", {}).setdefault(scope[1], {})[key] = answer

    def _record_fields(
        self, scope: tuple[int, int | None] | None, requests: Any, values: Any
    ) -> None:
        if scope is None:
            return
        device = self.devices.setdefault(scope[0], {"calls": {}, "fields": {}})
        for request, value in zip(requests, values, strict=False):
            if value.nvmlReturn != 0:
                answer = {"error": error_name(self._nvml, value.nvmlReturn)}
            else:
                member = VALUE_MEMBERS[value.valueType]
                answer = {
                    "value": getattr(value.value, member),
                    "type": value.valueType,
                }
            device["fields"][field_key(request)] = answer


def _handle_key(value: Any) -> Any:
    # pynvml's handles are ctypes pointers, new objects on every call that share
    # an address; anything else that is not a plain value (a fake's handle)
    # stands for itself.
    if isinstance(value, ctypes._Pointer):
        return ("address", ctypes.cast(value, ctypes.c_void_p).value)
    if value is None or isinstance(value, int | float | str | bytes | list | tuple):
        return None
    try:
        hash(value)
    except TypeError:
        return None
    return ("object", value)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
