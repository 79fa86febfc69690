"""The sizes the service exports: a Sizer's, rounded up to a step a limit can
be set in and kept within [0, the unit's full size]."""

from __future__ import annotations

import math

from detector.optimizer.config import ServiceResource

# Steps per unit: whole bytes; millicores, the finest CPU limit Kubernetes
# takes; a tenth of a percent of GPU time, finer than NVML's whole percents.
STEPS_PER_UNIT = {"bytes": 1.0, "cores": 1000.0, "ratio": 1000.0}


def exported(value: float, resource: ServiceResource) -> float:
    """`value` rounded up to a whole step of the unit, within [0, full size]."""
    steps = STEPS_PER_UNIT.get(resource.unit)
    if steps is not None:
        # Rounded to a millionth of a step first, so that 2e9 x 1.2 stays 2.4e9
        # and a policy's 1e-12 floor on an idle series reads as 0.
        value = math.ceil(round(value * steps, 6)) / steps
    full = resource.scale if resource.scale is not None else math.inf
    return min(max(value, 0.0), full)
