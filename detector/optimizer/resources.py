"""What the optimizer sizes: each resource's unit, kind and replay timing.

The four recorded resources follow the allocation replay protocol of the shared
data sets; the service's resources use the same kinds with their own units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HOUR = 3600.0
DAY = 86400.0

Kind = Literal["cpu", "memory"]


@dataclass(frozen=True)
class ResourceSpec:
    """One sized quantity.

    `kind` is "cpu" for a compressible resource (short means throttled) and
    "memory" for an incompressible one (short means an OOM kill). `scale` is
    the natural full size in `unit` (100 for a percentage, 1 for a fraction),
    or None where the unit has no known full size, such as bytes.
    """

    name: str
    kind: Kind
    unit: str
    scale: float | None
    warmup_seconds: float
    period_seconds: float
    step_seconds: float

    def __post_init__(self) -> None:
        if self.kind not in ("cpu", "memory"):
            raise ValueError(f"kind must be 'cpu' or 'memory', got {self.kind!r}")
        for key in ("warmup_seconds", "period_seconds", "step_seconds"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)!r}")
        if self.scale is not None and not self.scale > 0:
            raise ValueError(f"scale must be > 0 or None, got {self.scale!r}")

    def above_full_size(self, reading: float) -> bool:
        """Whether no reading of this resource can be as large: it is in another
        unit, such as a percentage read as a fraction, or no reading at all."""
        return above_full_size(reading, self.scale, self.unit)

    @property
    def largest_reading(self) -> float | None:
        return largest_reading(self.scale, self.unit)


# Units without a full size still have readings no real resource reaches. An
# exbibyte is a thousand times the memory of the largest machines sold, and a
# million cores more than any one host or container has; a reading above
# either is another unit or a broken exporter, and sizing it overflows floats
# (a limit of 1e308 bytes, savings of -1e300).
PLAUSIBLE_MAX = {"bytes": 2.0**60, "cores": 1e6}


def largest_reading(scale: float | None, unit: str) -> float | None:
    """The full size `scale`, or else the unit's plausible maximum; None where
    neither is known."""
    return scale if scale is not None else PLAUSIBLE_MAX.get(unit)


def above_full_size(reading: float, scale: float | None, unit: str) -> bool:
    """Whether `reading` passes the full size `scale`, or where there is none
    (None), the largest plausible reading in `unit`."""
    largest = largest_reading(scale, unit)
    # A rounding error's worth above the full size is still a full reading.
    return largest is not None and reading > largest * (1 + 1e-6)


@dataclass(frozen=True)
class UsageFile:
    """Where a recorded resource lives in the shared data and how to read it."""

    spec: ResourceSpec
    path: str
    series_column: str
    value_column: str


# W, U and the step are the protocol's (ALLOCATION-PROTOCOL.md, section 1).
RECORDED: dict[str, UsageFile] = {
    f.spec.name: f
    for f in (
        UsageFile(
            ResourceSpec("vm_cpu", "cpu", "% of VM cores", 100.0, 2 * DAY, DAY, 300.0),
            "azure-vm-cpu/vm_cpu.csv.gz",
            "vm",
            "cpu_max_percent",
        ),
        UsageFile(
            ResourceSpec(
                "pod_gpu_memory_used_bytes",
                "memory",
                "bytes",
                None,
                3 * HOUR,
                HOUR,
                57.0,
            ),
            "alibaba-genai/pod_gpu_memory_used_bytes.csv.gz",
            "container",
            "value",
        ),
        UsageFile(
            ResourceSpec(
                "pod_memory_util",
                "memory",
                "fraction of pod memory limit",
                1.0,
                3 * HOUR,
                HOUR,
                57.0,
            ),
            "alibaba-genai/pod_memory_util.csv.gz",
            "container",
            "value",
        ),
        UsageFile(
            ResourceSpec(
                "pod_gpu_duty_cycle",
                "cpu",
                "% of GPU time",
                100.0,
                3 * HOUR,
                HOUR,
                57.0,
            ),
            "alibaba-genai/pod_gpu_duty_cycle.csv.gz",
            "container",
            "value",
        ),
    )
}
