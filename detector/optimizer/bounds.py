"""The sizes the service exports: a Sizer's, rounded up to a step a limit can
be set in and kept within [0, the unit's full size or largest reading]."""

from __future__ import annotations

import math
import sys

from detector.optimizer.config import ServiceResource
from detector.optimizer.resources import largest_reading

# Steps per unit: whole bytes; millicores, the finest CPU limit Kubernetes
# takes; a tenth of a percent of GPU time, finer than NVML's whole percents.
STEPS_PER_UNIT = {"bytes": 1.0, "cores": 1000.0, "ratio": 1000.0}


def exported(value: float, resource: ServiceResource) -> float:
    """`value` rounded up to a whole step of the unit, within [0, the largest
    reading]: always a finite number, whatever a policy answered."""
    top = largest_reading(resource.scale, resource.unit)
    if top is None:
        top = sys.float_info.max
    if math.isnan(value):
        # No size is known: the largest limits nothing, where any other could
        # cut a series short.
        return top
    # Kept within bounds first, so that the steps cannot overflow a float.
    value = min(max(value, 0.0), top)
    steps = STEPS_PER_UNIT.get(resource.unit)
    if steps is not None and math.isfinite(value * steps):
        # Rounded to a millionth of a step first, so that 2e9 x 1.2 stays 2.4e9
        # and a policy's 1e-12 floor on an idle series reads as 0.
        value = min(math.ceil(round(value * steps, 6)) / steps, top)
    return value
