"""Xid codes as data: what each means, how bad it is, and what to do about it.

Source: NVIDIA's Xid catalog in the GPU deployment and management documentation
("Xid Errors", docs.nvidia.com/deploy/xid-errors), its immediate-action column
folded into four classes: application_fault (restart the application), reset_gpu,
reboot, drain_and_inspect (take the node out and check the hardware). The short
descriptions are ours. A code not listed here is exported as severity "warning"
and action "unknown", never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

APPLICATION_FAULT = "application_fault"
RESET_GPU = "reset_gpu"
REBOOT = "reboot"
DRAIN_AND_INSPECT = "drain_and_inspect"
NO_ACTION = "none"
UNKNOWN = "unknown"

CRITICAL, WARNING, INFO = "critical", "warning", "info"


@dataclass(frozen=True)
class XidInfo:
    description: str
    severity: str
    action: str


CATALOG: dict[int, XidInfo] = {
    8: XidInfo(
        "GPU stopped processing: a channel timed out", WARNING, APPLICATION_FAULT
    ),
    13: XidInfo(
        "Graphics engine exception in an application", WARNING, APPLICATION_FAULT
    ),
    31: XidInfo("GPU memory page fault in an application", WARNING, APPLICATION_FAULT),
    43: XidInfo("GPU stopped an application that faulted", WARNING, APPLICATION_FAULT),
    45: XidInfo(
        "Preemptive cleanup after an earlier error or kill", INFO, APPLICATION_FAULT
    ),
    46: XidInfo("GPU stopped processing", CRITICAL, RESET_GPU),
    48: XidInfo("Double-bit ECC error", CRITICAL, RESET_GPU),
    61: XidInfo("Internal micro-controller breakpoint or warning", WARNING, RESET_GPU),
    62: XidInfo("Internal micro-controller halted", CRITICAL, RESET_GPU),
    63: XidInfo(
        "Page retirement or row remap recorded; reset to apply", WARNING, RESET_GPU
    ),
    64: XidInfo(
        "Page retirement or row remap could not be recorded",
        CRITICAL,
        DRAIN_AND_INSPECT,
    ),
    68: XidInfo("Video decoder exception", WARNING, APPLICATION_FAULT),
    69: XidInfo("Graphics engine class error", WARNING, APPLICATION_FAULT),
    74: XidInfo("NVLink error", CRITICAL, RESET_GPU),
    79: XidInfo("GPU has fallen off the bus", CRITICAL, REBOOT),
    92: XidInfo("High single-bit ECC error rate", WARNING, DRAIN_AND_INSPECT),
    94: XidInfo(
        "Contained ECC error; affected applications were stopped",
        WARNING,
        APPLICATION_FAULT,
    ),
    95: XidInfo("Uncontained ECC error", CRITICAL, RESET_GPU),
    109: XidInfo("Context switch timeout", WARNING, APPLICATION_FAULT),
    119: XidInfo("GSP firmware call timed out", CRITICAL, RESET_GPU),
    120: XidInfo("GSP firmware error", CRITICAL, RESET_GPU),
    140: XidInfo("Unrecovered ECC error", CRITICAL, RESET_GPU),
    154: XidInfo("The driver's recommended recovery action changed", INFO, NO_ACTION),
}

_UNLISTED = XidInfo("Not in the catalog", WARNING, UNKNOWN)


def lookup(xid: int) -> XidInfo:
    """The catalog entry for `xid`, or the unlisted entry."""
    return CATALOG.get(xid, _UNLISTED)
