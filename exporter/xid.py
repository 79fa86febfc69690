"""Counts Xid errors per GPU and code from two readers: NVML event sets and the
kernel log. Needs neither: each reader that cannot start reports so and the
other carries on; with both gone the counts simply stop growing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.kmsg import KmsgReader, parse_record, short_bus_id
from exporter.nvml_session import GpuIdentity, NvmlSession
from exporter.once import Once
from exporter.xid_catalog import lookup

log = logging.getLogger(__name__)

NVML, KMSG = "nvml", "kmsg"
_XID_EVENT = 0x8  # nvmlEventTypeXidCriticalError in nvml.h
_MAX_EVENTS = 1000


@dataclass(frozen=True)
class XidTotal:
    pci_bus_id: str
    xid: int
    count: int
    last_seen: float


@dataclass(frozen=True)
class XidSample:
    totals: tuple[XidTotal, ...]
    readers: dict[str, bool]
    gpus: dict[str, GpuIdentity]


class XidLedger:
    """Per-reader counts per (GPU bus id, Xid), merged without double counting.

    Both readers see the same events when both work, at slightly different
    moments. Each reader's count only grows, so their maximum only grows too and
    counts every event once, whichever reader saw it first.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}
        self._last_seen: dict[tuple[str, int], float] = {}

    def record(self, reader: str, bus: str, xid: int, when: float) -> None:
        key = (reader, bus, xid)
        self._counts[key] = self._counts.get(key, 0) + 1
        self._last_seen[(bus, xid)] = max(when, self._last_seen.get((bus, xid), 0.0))

    def totals(self) -> tuple[XidTotal, ...]:
        merged: dict[tuple[str, int], int] = {}
        for (_, bus, xid), count in self._counts.items():
            merged[(bus, xid)] = max(count, merged.get((bus, xid), 0))
        return tuple(
            XidTotal(bus, xid, count, self._last_seen[(bus, xid)])
            for (bus, xid), count in sorted(merged.items())
        )


class NvmlXidEvents:
    """An NVML event set registered for Xid events on every GPU that has them."""

    def __init__(self, session: NvmlSession, wait_ms: int = 10) -> None:
        self._session = session
        self._wait_ms = wait_ms
        self._set: Any = None
        self._once = Once(log)

    def drain(self) -> list[tuple[str, int]] | None:
        """(bus id, Xid) of the events waiting; None when events are unavailable."""
        if self._session.start() is None:
            return None
        if self._set is None:
            self._set = self._register()
        if self._set is None or self._set is False:
            return None

        nvml = self._session.nvml
        found = []
        # The first wait is short rather than zero so that an event the driver
        # is posting right now is not left for the next cycle.
        timeout = self._wait_ms
        for _ in range(_MAX_EVENTS):
            try:
                event = nvml.nvmlEventSetWait(self._set, timeout)
            except nvml.NVMLError as exc:
                if exc.value != nvml.NVML_ERROR_TIMEOUT:
                    self._once.log(
                        logging.WARNING, "wait", "NVML event wait failed error=%s", exc
                    )
                break
            timeout = 0
            if event.eventType & _XID_EVENT:
                found.append((self._bus_of(event.device), int(event.eventData)))
        return found

    def _register(self) -> Any:
        """The event set; None to try again next cycle, False for never."""
        session = self._session
        nvml = session.nvml
        try:
            event_set = nvml.nvmlEventSetCreate()
        except nvml.NVMLError as exc:
            self._once.log(
                logging.WARNING, "create", "NVML event set unavailable error=%s", exc
            )
            return None

        registered = 0
        for index in range(session.device_count()):
            try:
                handle = session.handle(index)
                supported = session.call("nvmlDeviceGetSupportedEventTypes", handle)
                if supported and supported & _XID_EVENT:
                    nvml.nvmlDeviceRegisterEvents(handle, _XID_EVENT, event_set)
                    registered += 1
            except Exception as exc:  # one GPU lost or refusing: register the rest
                self._once.log(
                    logging.WARNING,
                    ("register", index),
                    "NVML Xid events not registered gpu=%s error=%s",
                    index,
                    exc,
                )
        if not registered:
            log.info("no GPU offers NVML Xid events; the kernel log is the source")
            return False
        log.info("NVML Xid events registered gpus=%s", registered)
        return event_set

    def _bus_of(self, device: Any) -> str:
        # A GPU that just failed may not answer for its bus id, but NVML still
        # knows its index, and the GPU reader knew its bus id before.
        for ask in (self._ask_bus, self._known_bus):
            try:
                bus = ask(device)
            except Exception:  # any NVML failure here: try the next way
                continue
            if bus:
                return bus
        return ""

    def _ask_bus(self, device: Any) -> str:
        pci = self._session.call("nvmlDeviceGetPciInfo", device)
        return "" if pci is None else short_bus_id(pci.busId)

    def _known_bus(self, device: Any) -> str:
        index = self._session.call("nvmlDeviceGetIndex", device)
        known = self._session.identities.get(index)
        return "" if known is None else short_bus_id(known.pci_bus_id)


class XidCollector:
    """Drains both readers into the ledger once per collection cycle."""

    def __init__(
        self,
        session: NvmlSession,
        kmsg: KmsgReader | None,
        nvml_events: NvmlXidEvents | None = None,
        wall: Callable[[], float] = time.time,
        uptime: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._kmsg = kmsg
        self._events = nvml_events
        self._wall = wall
        self._uptime = uptime
        self._ledger = XidLedger()
        self._once = Once(log)

    def collect(self) -> XidSample:
        readers = {NVML: self._drain_nvml(), KMSG: self._drain_kmsg()}
        gpus = {
            short_bus_id(gpu.pci_bus_id): gpu
            for gpu in self._session.identities.values()
        }
        return XidSample(self._ledger.totals(), readers, gpus)

    def _drain_nvml(self) -> bool:
        if self._events is None:
            return False
        events = self._events.drain()
        if events is None:
            return False
        now = self._wall()
        for bus, xid in events:
            self._note(NVML, bus, xid)
            self._ledger.record(NVML, bus, xid, now)
        return True

    def _drain_kmsg(self) -> bool:
        if self._kmsg is None:
            return False
        try:
            records = self._kmsg.read()
        except OSError as exc:
            self._once.log(
                logging.WARNING,
                "kmsg",
                "kernel log unreadable, Xids only from NVML path=%s error=%s",
                self._kmsg.path,
                exc,
            )
            return False
        if self._once.forget("kmsg"):
            log.info("kernel log readable again path=%s", self._kmsg.path)

        # kmsg stamps records in seconds since boot; now minus uptime is boot.
        boot = self._wall() - self._uptime()
        for record in records:
            line = parse_record(record)
            if line is None:
                continue
            when = self._wall() if line.seconds is None else boot + line.seconds
            self._note(KMSG, line.pci_bus_id, line.xid)
            self._ledger.record(KMSG, line.pci_bus_id, line.xid, when)
        return True

    def _note(self, reader: str, bus: str, xid: int) -> None:
        # An application faulting in a loop repeats its Xid thousands of times;
        # the counter has them all, the log says each kind once.
        info = lookup(xid)
        self._once.log(
            logging.WARNING,
            ("xid", bus, xid),
            "Xid seen reader=%s pci_bus_id=%s xid=%s severity=%s action=%s "
            "description=%r",
            reader,
            bus,
            xid,
            info.severity,
            info.action,
            info.description,
        )
