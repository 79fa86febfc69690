"""Reads the kernel log (/dev/kmsg) without blocking and finds the NVIDIA driver's
`NVRM: Xid (PCI:0000:18:00): 79, ...` lines in it.

Needs read access to /dev/kmsg (root, or dmesg_restrict=0); without it the Xid
reader reports itself unavailable and NVML's events are the only Xid source.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# One read() of /dev/kmsg returns one record; the kernel refuses buffers
# smaller than the record, and a record is at most about 8 KiB.
_RECORD_BYTES = 16384
# Bounds one drain, so a log storm costs a cycle at most this many records.
MAX_RECORDS = 20000

_XID = re.compile(
    r"NVRM: Xid \((?:PCI:)?([0-9A-Fa-f]{1,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2})"
    r"(?:\.[0-7])?\): (\d+)"
)


@dataclass(frozen=True)
class XidLine:
    """One Xid the driver logged; `seconds` is the record's time since boot."""

    pci_bus_id: str
    xid: int
    seconds: float | None


class Device(Protocol):
    def read(self, size: int) -> bytes: ...

    def close(self) -> None: ...


def short_bus_id(bus_id: str) -> str:
    """'00000000:18:00.0' and 'PCI:0000:18:00' both become '0000:18:00'."""
    parts = bus_id.removeprefix("PCI:").split(":")
    if len(parts) != 3:
        return bus_id.lower()
    try:
        domain, bus, device = (int(part.split(".")[0], 16) for part in parts)
    except ValueError:
        return bus_id.lower()
    return f"{domain:04x}:{bus:02x}:{device:02x}"


def parse_record(record: str) -> XidLine | None:
    """An Xid from one kmsg record ('6,812,4567890,-;NVRM: Xid ...') or a plain
    dmesg line; None for anything else."""
    seconds = None
    message = record
    header, sep, rest = record.partition(";")
    fields = header.split(",")
    if sep and len(fields) >= 3 and fields[2].isdigit():
        seconds = int(fields[2]) / 1e6
        # Continuation lines (" SUBSYSTEM=pci") follow the message.
        message = rest.split("\n", 1)[0]

    match = _XID.search(message)
    if match is None:
        return None
    return XidLine(short_bus_id(match.group(1)), int(match.group(2)), seconds)


class _Fd:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def read(self, size: int) -> bytes:
        return os.read(self._fd, size)

    def close(self) -> None:
        os.close(self._fd)


def open_kmsg(path: str) -> Device:
    """Open `path` non-blocking, positioned after the last record already there."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    # Counting starts now: the records before are history a restarted exporter
    # would otherwise count again as new errors.
    os.lseek(fd, 0, os.SEEK_END)
    return _Fd(fd)


class KmsgReader:
    """New kernel log records on each read(); opens the device on first use."""

    def __init__(
        self,
        path: str = "/dev/kmsg",
        open_device: Callable[[str], Device] = open_kmsg,
    ) -> None:
        self.path = path
        self._open = open_device
        self._device: Device | None = None
        self.missed = 0

    def read(self) -> list[str]:
        """Records logged since the last call; raises OSError when unreadable."""
        if self._device is None:
            self._device = self._open(self.path)

        records = []
        for _ in range(MAX_RECORDS):
            try:
                data = self._device.read(_RECORD_BYTES)
            except BlockingIOError:
                break
            except BrokenPipeError:
                # The ring buffer wrapped past us; the next read resumes at the
                # oldest record still there.
                self.missed += 1
                continue
            except OSError:
                self.close()
                raise
            if not data:
                break
            records.append(data.decode(errors="replace"))
        return records

    def close(self) -> None:
        if self._device is not None:
            self._device.close()
            self._device = None
