"""Xids from the kernel log (kmsg records and dmesg lines as the driver writes
them) and from NVML event sets, counted once per GPU and code, with the catalog."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from exporter.gpu import GpuReader
from exporter.kmsg import KmsgReader, XidLine, parse_record, short_bus_id
from exporter.nvml_session import NvmlSession
from exporter.xid import KMSG, NVML, NvmlXidEvents, XidCollector, XidLedger
from exporter.xid_catalog import CATALOG, lookup
from exporter.xid_metrics import xid_families
from tests.exporter.exposition import series, value
from tests.exporter.fake_nvml import H100, FakeNvml, load_fixture

KMSG_FIXTURES = Path(__file__).parent / "fixtures" / "kmsg"
UUID = "GPU-3b4c6a9e-5f21-8d07-c2e4-71a0f9d3b6{:02x}"
BOOT = 1_700_000_000.0


def kmsg_records(name="records.txt"):
    """The fixture's records: a line opens one, lines starting with a space
    continue it, as /dev/kmsg returns them one per read."""
    records: list[str] = []
    for line in (KMSG_FIXTURES / name).read_text().splitlines():
        if line.startswith(" ") and records:
            records[-1] += line + "\n"
        else:
            records.append(line + "\n")
    return records


class FakeKmsg:
    """/dev/kmsg: one record per read, EAGAIN when drained, EPIPE when the ring
    buffer overwrote unread records."""

    def __init__(self, records=(), fail=None):
        self.queue: list[object] = list(records)
        self.fail = fail
        self.closed = False

    def read(self, size):
        if self.fail is not None:
            raise self.fail
        if not self.queue:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        item = self.queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item.encode()

    def close(self):
        self.closed = True


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            "4,2212,1843210512,-;NVRM: Xid (PCI:0000:18:00): 13, pid=48213, x",
            XidLine("0000:18:00", 13, 1843.210512),
        ),
        (
            "[ 3001.000000] NVRM: Xid (0000:78:00): 48, pid=1193, name=python3",
            XidLine("0000:78:00", 48, None),
        ),
        ("6,2215,1843290001,-;usb 1-1: new high-speed USB device", None),
        (
            "3,2217,2950118350,-;NVRM: GPU 0000:38:00.0: GPU has fallen off the bus.",
            None,
        ),
    ],
)
def test_parse_record(record, expected):
    assert parse_record(record) == expected


def test_every_xid_line_of_the_fixtures_is_found():
    found = [parse_record(r) for r in kmsg_records()]
    dmesg = [parse_record(line) for line in kmsg_records("dmesg.txt")]

    assert [(x.pci_bus_id, x.xid) for x in found if x] == [
        ("0000:18:00", 13),
        ("0000:18:00", 13),
        ("0000:18:00", 43),
        ("0000:38:00", 79),
        ("0000:58:00", 63),
    ]
    assert [x.xid for x in dmesg if x] == [13, 79, 48, 154]


def test_bus_ids_of_nvml_and_the_kernel_log_agree():
    assert short_bus_id("00000000:18:00.0") == short_bus_id("PCI:0000:18:00")
    assert short_bus_id("0000:3B:00") == "0000:3b:00"


def test_reader_drains_without_blocking_and_survives_a_wrapped_buffer():
    device = FakeKmsg(["6,1,1,-;first\n", BrokenPipeError(), "6,9,9,-;after\n"])
    reader = KmsgReader("/dev/kmsg", lambda path: device)

    assert reader.read() == ["6,1,1,-;first\n", "6,9,9,-;after\n"]
    assert reader.missed == 1
    assert reader.read() == []


def test_ledger_counts_an_event_seen_by_both_readers_once():
    ledger = XidLedger()
    ledger.record(KMSG, "0000:18:00", 13, 100.0)
    ledger.record(KMSG, "0000:18:00", 13, 101.0)
    # NVML delivers the same two, one of them a cycle later.
    ledger.record(NVML, "0000:18:00", 13, 102.0)
    first = ledger.totals()
    ledger.record(NVML, "0000:18:00", 13, 130.0)
    second = ledger.totals()

    assert [(t.count, t.last_seen) for t in first] == [(2, 102.0)]
    assert [(t.count, t.last_seen) for t in second] == [(2, 130.0)]


class Faults:
    """An XidCollector over a fake NVML of four H100s and a fake kmsg."""

    def __init__(self, kmsg=None, nvml_events=True):
        self.nvml = FakeNvml(load_fixture(H100), count=4)
        self.session = NvmlSession(lambda: self.nvml)
        self.kmsg = kmsg if kmsg is not None else FakeKmsg()
        self.collector = XidCollector(
            self.session,
            KmsgReader("/dev/kmsg", lambda path: self.kmsg),
            NvmlXidEvents(self.session) if nvml_events else None,
            wall=lambda: BOOT + 5000.0,
            uptime=lambda: 5000.0,
        )
        GpuReader(self.session).read()

    def scrape(self):
        return series(xid_families(self.collector.collect()))


def xid_labels(gpu, xid, bus=None):
    info = lookup(xid)
    return {
        "gpu": str(gpu),
        "uuid": UUID.format(gpu),
        "pci_bus_id": bus or f"0000:{0x18 + 0x20 * gpu:02x}:00",
        "xid": str(xid),
        "severity": info.severity,
        "action": info.action,
    }


def test_kernel_log_xids_are_counted_per_gpu_with_their_catalog_entry():
    faults = Faults(FakeKmsg(kmsg_records()))

    parsed = faults.scrape()

    assert value(parsed, "aiops_gpu_xid_errors_total", **xid_labels(0, 13)) == 2
    fallen = xid_labels(1, 79)
    assert (fallen["severity"], fallen["action"]) == ("critical", "reboot")
    assert value(parsed, "aiops_gpu_xid_errors_total", **fallen) == 1
    # kmsg time is since boot: 2950.118342 s after it.
    assert value(
        parsed, "aiops_gpu_xid_last_seen_timestamp_seconds", **fallen
    ) == pytest.approx(BOOT + 2950.118342)
    assert value(parsed, "aiops_gpu_xid_errors_total", **xid_labels(2, 63)) == 1
    assert value(parsed, "aiops_gpu_xid_reader_available", reader="kmsg") == 1
    assert value(parsed, "aiops_gpu_xid_reader_available", reader="nvml") == 1


def test_nvml_events_and_the_kernel_log_agree_on_one_count():
    faults = Faults()
    faults.nvml.events = [(0, 48), (3, 31)]
    faults.kmsg.queue = [
        "4,1,2000000,-;NVRM: Xid (PCI:0000:18:00): 48, pid=1, DBE\n",
    ]

    parsed = faults.scrape()

    assert faults.nvml.registered == {0, 1, 2, 3}
    assert value(parsed, "aiops_gpu_xid_errors_total", **xid_labels(0, 48)) == 1
    assert value(parsed, "aiops_gpu_xid_errors_total", **xid_labels(3, 31)) == 1


def test_xid_on_a_gpu_nvml_does_not_know_keeps_its_bus_id():
    faults = Faults(FakeKmsg(["4,1,1,-;NVRM: Xid (PCI:0000:c1:00): 95, x\n"]))

    parsed = faults.scrape()

    labels = {**xid_labels(0, 95, bus="0000:c1:00"), "gpu": "", "uuid": ""}
    assert value(parsed, "aiops_gpu_xid_errors_total", **labels) == 1


def test_unreadable_kernel_log_warns_once_and_nvml_carries_on(caplog):
    denied = FakeKmsg(fail=PermissionError(errno.EPERM, "Operation not permitted"))
    faults = Faults(denied)
    faults.nvml.events = [(2, 79)]

    with caplog.at_level(logging.WARNING):
        faults.scrape()
        parsed = faults.scrape()

    assert value(parsed, "aiops_gpu_xid_reader_available", reader="kmsg") == 0
    assert value(parsed, "aiops_gpu_xid_errors_total", **xid_labels(2, 79)) == 1
    unreadable = [r for r in caplog.records if "kernel log unreadable" in r.message]
    assert len(unreadable) == 1


def test_without_nvml_the_kernel_log_still_counts():
    faults = Faults(FakeKmsg(kmsg_records()), nvml_events=False)
    faults.nvml.missing = True
    faults.session.close()
    faults.session.identities = {}

    parsed = faults.scrape()

    assert value(parsed, "aiops_gpu_xid_reader_available", reader="nvml") == 0
    fallen = {**xid_labels(1, 79), "gpu": "", "uuid": ""}
    assert value(parsed, "aiops_gpu_xid_errors_total", **fallen) == 1


def test_an_xid_storm_logs_each_kind_once(caplog):
    storm = ["4,1,1,-;NVRM: Xid (PCI:0000:18:00): 13, pid=7, x\n"] * 500
    faults = Faults(FakeKmsg(storm))

    with caplog.at_level(logging.WARNING):
        parsed = faults.scrape()

    assert value(parsed, "aiops_gpu_xid_errors_total", **xid_labels(0, 13)) == 500
    assert len([r for r in caplog.records if "Xid seen" in r.message]) == 1


def test_catalog_entries_use_the_four_action_classes():
    actions = {info.action for info in CATALOG.values()}
    severities = {info.severity for info in CATALOG.values()}

    assert actions <= {
        "application_fault",
        "reset_gpu",
        "reboot",
        "drain_and_inspect",
        "none",
    }
    assert severities <= {"critical", "warning", "info"}
    assert lookup(9999).action == "unknown"
    assert lookup(79).action == "reboot"


def test_a_lost_gpu_does_not_keep_the_others_from_xid_events():
    faults = Faults()
    faults.nvml.lost = {1}
    faults.nvml.events = [(2, 74)]

    parsed = faults.scrape()

    assert faults.nvml.registered == {0, 2, 3}
    assert value(parsed, "aiops_gpu_xid_errors_total", **xid_labels(2, 74)) == 1
