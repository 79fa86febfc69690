"""The Xid metrics: counts and last-seen times per GPU and Xid, labelled with
the catalog's severity and action, and whether each reader works."""

from __future__ import annotations

from prometheus_client.core import Metric

from exporter.metrics import Spec, non_empty
from exporter.xid import XidSample
from exporter.xid_catalog import lookup

# gpu and uuid are empty for an Xid on a bus id NVML has not named (NVML down,
# or a GPU that never answered); pci_bus_id is always there.
XID = ("gpu", "uuid", "pci_bus_id", "xid", "severity", "action")

XID_ERRORS = Spec(
    "aiops_gpu_xid_errors_total",
    "Xid errors the NVIDIA driver reported for a GPU since the exporter started, "
    "from NVML events and the kernel log, each counted once. severity and action "
    "(application_fault, reset_gpu, reboot, drain_and_inspect, none, unknown) "
    "come from NVIDIA's Xid catalog.",
    XID,
)
XID_LAST_SEEN = Spec(
    "aiops_gpu_xid_last_seen_timestamp_seconds",
    "Unix time an Xid was last seen on a GPU.",
    XID,
)
XID_READER = Spec(
    "aiops_gpu_xid_reader_available",
    "1 when an Xid reader works: nvml (NVML event sets) or kmsg (the kernel log).",
    ("reader",),
)


def xid_families(sample: XidSample) -> list[Metric]:
    """Reader availability, then one counter and last-seen per (GPU, Xid)."""
    readers = XID_READER.gauge()
    for reader, available in sorted(sample.readers.items()):
        readers.add_metric([reader], 1 if available else 0)

    errors, last_seen = XID_ERRORS.counter(), XID_LAST_SEEN.gauge()
    for total in sample.totals:
        gpu = sample.gpus.get(total.pci_bus_id)
        info = lookup(total.xid)
        labels = [
            "" if gpu is None else str(gpu.index),
            "" if gpu is None else gpu.uuid,
            total.pci_bus_id,
            str(total.xid),
            info.severity,
            info.action,
        ]
        errors.add_metric(labels, total.count)
        last_seen.add_metric(labels, total.last_seen)

    return [readers, *non_empty([errors, last_seen])]
