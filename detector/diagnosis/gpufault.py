"""GPU fault diagnosis: a class (application fault, reset the GPU, reboot,
drain and inspect) from Xid events, health, throttle reasons, ECC and row
remapping, escalated when a fault repeats after its remedy.

Reads the exporter's series as data: the Xid catalog's verdict arrives in the
`action` label of aiops_gpu_xid_errors_total, so nothing here imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

APPLICATION_FAULT = "application_fault"
RESET_GPU = "reset_gpu"
REBOOT = "reboot"
DRAIN_AND_INSPECT = "drain_and_inspect"
THERMAL_THROTTLE = "thermal_throttle"
POWER_THROTTLE = "power_throttle"
HEALTHY = "none"

# Remedies in order of strength: a fault that comes back after one moves up.
LADDER = (APPLICATION_FAULT, RESET_GPU, REBOOT, DRAIN_AND_INSPECT)
# Classes that need no remedy of the GPU, worst first when several hold.
THROTTLES = (THERMAL_THROTTLE, POWER_THROTTLE)

# Driver recovery actions (aiops_gpu_recovery_action) in ladder terms.
_RECOVERY = {
    "gpu_reset": RESET_GPU,
    "drain_and_reset": RESET_GPU,
    "drain_p2p": RESET_GPU,
    "node_reboot": REBOOT,
}
THERMAL_REASONS = ("sw_thermal_slowdown", "hw_thermal_slowdown", "hw_slowdown")
POWER_REASONS = ("sw_power_cap", "hw_power_brake_slowdown")

_EXPLAIN = {
    "sw_thermal_slowdown": (
        "the GPU reached the temperature at which the driver lowers its clocks "
        "to cool down"
    ),
    "hw_thermal_slowdown": (
        "the GPU got hot enough for its own hardware to cut the clocks hard, "
        "a step beyond the driver's slowdown"
    ),
    "hw_slowdown": (
        "the hardware cut the clocks, for heat or for a power supply signal; "
        "the temperature series tells which"
    ),
    "sw_power_cap": (
        "the GPU draws as much power as its power limit allows, so the driver "
        "holds its clocks down to stay under the limit"
    ),
    "hw_power_brake_slowdown": (
        "the power supply or the system asked the GPU to brake: an external "
        "power signal, not the GPU's own limit"
    ),
}


@dataclass(frozen=True)
class XidEvent:
    """An Xid code seen on a GPU over the window, with the catalog's action."""

    xid: int
    action: str
    count: float
    last_seen: float = 0.0


@dataclass(frozen=True)
class Remedy:
    """A remedy applied to the GPU or its node, and when."""

    kind: str  # one of LADDER
    at: float


@dataclass(frozen=True)
class GpuEvidence:
    """What the exporter tells about one GPU over the window."""

    xids: Sequence[XidEvent] = ()
    health: str = "healthy"
    recovery_action: str = "none"
    clock_reasons: Mapping[str, float] = field(default_factory=dict)
    ecc_uncorrected_increase: float = 0.0
    remapped_rows_pending: bool = False
    remapped_rows_failed: bool = False
    remedies: Sequence[Remedy] = ()


@dataclass(frozen=True)
class GpuDiagnosis:
    """The class, the evidence it rests on, and whether it was escalated."""

    fault_class: str
    reasons: tuple[str, ...]
    escalated: bool = False
    explanation: str = ""


def diagnose_gpu(evidence: GpuEvidence) -> GpuDiagnosis:
    """Decide one GPU's fault class; HEALTHY when nothing points at a fault."""
    found: list[tuple[str, str]] = []
    escalated = False

    for event in evidence.xids:
        if event.count <= 0:
            continue
        step = event.action if event.action in LADDER else None
        if step is None:
            # none (Xid 154) needs nothing; unknown codes are only reported.
            continue
        repeated = _repeated_after(event, step, evidence.remedies)
        if repeated is not None:
            step = LADDER[min(LADDER.index(repeated) + 1, len(LADDER) - 1)]
            escalated = True
            found.append((step, f"Xid {event.xid} came back after {repeated}"))
        else:
            found.append((step, f"Xid {event.xid} x{event.count:g}"))

    if evidence.health == "lost":
        found.append((REBOOT, "GPU lost (fallen off the bus)"))
    elif evidence.health == "reset_required":
        found.append((RESET_GPU, "GPU needs a reset"))
    recovery = _RECOVERY.get(evidence.recovery_action)
    if recovery:
        found.append((recovery, f"driver recommends {evidence.recovery_action}"))
    if evidence.remapped_rows_failed:
        found.append((DRAIN_AND_INSPECT, "row remapping failed"))
    elif evidence.remapped_rows_pending:
        found.append((RESET_GPU, "remapped rows wait for a reset"))
    if evidence.ecc_uncorrected_increase > 0:
        found.append((RESET_GPU, "uncorrected ECC errors"))

    if found:
        worst = max(found, key=lambda f: LADDER.index(f[0]))[0]
        reasons = tuple(reason for _, reason in found)
        return GpuDiagnosis(worst, reasons, escalated, explain_class(worst))

    active = [r for r, on in evidence.clock_reasons.items() if on >= 1]
    for throttle, names in (
        (THERMAL_THROTTLE, THERMAL_REASONS),
        (POWER_THROTTLE, POWER_REASONS),
    ):
        held = [r for r in names if r in active]
        if held:
            return GpuDiagnosis(throttle, tuple(held), False, explain_throttle(held))
    return GpuDiagnosis(HEALTHY, ())


def _repeated_after(
    event: XidEvent, step: str, remedies: Sequence[Remedy]
) -> str | None:
    """The strongest remedy at or above `step` that the Xid came back after."""
    rung = LADDER.index(step)
    after = [
        r.kind
        for r in remedies
        if r.kind in LADDER and LADDER.index(r.kind) >= rung and event.last_seen > r.at
    ]
    return max(after, key=LADDER.index) if after else None


def explain_throttle(reasons: Sequence[str]) -> str:
    """Plain words for why a GPU runs slower, one sentence per reason."""
    parts = [f"{r}: {_EXPLAIN[r]}." for r in reasons if r in _EXPLAIN]
    if any(r in THERMAL_REASONS for r in reasons):
        parts.append(
            "Work still runs correctly, only slower. Check the fans, the airflow "
            "and the inlet temperature of the rack; a GPU hotter than its "
            "neighbours under the same load points at its cooling."
        )
    elif parts:
        parts.append(
            "At full load this is by design; it costs speed only when the limit "
            "was set below the board's default (aiops_gpu_power_limit_watts)."
        )
    return " ".join(parts)


def explain_class(fault_class: str) -> str:
    """One sentence on what the class means for the operator."""
    return {
        APPLICATION_FAULT: (
            "The fault lies with the application: restart it; the GPU itself "
            "needs nothing."
        ),
        RESET_GPU: (
            "The GPU is in a bad state: drain its work and reset it "
            "(nvidia-smi --gpu-reset)."
        ),
        REBOOT: "The GPU cannot recover alone: drain the node and reboot it.",
        DRAIN_AND_INSPECT: (
            "The fault points at hardware: drain the node, keep it out of "
            "service and have the GPU inspected or replaced."
        ),
    }.get(fault_class, "")
