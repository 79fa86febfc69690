from __future__ import annotations

import math

import pytest

from detector.optimizer.bounds import exported
from detector.optimizer.config import SERVICE_RESOURCES
from detector.optimizer.resources import PLAUSIBLE_MAX

MEMORY = SERVICE_RESOURCES["memory_bytes"]
CPU = SERVICE_RESOURCES["cpu_cores"]
GPU_TIME = SERVICE_RESOURCES["gpu_time_ratio"]


@pytest.mark.parametrize(
    ("value", "resource", "expected"),
    [
        (2e9 * 1.2, MEMORY, 2.4e9),
        (1e9 + 0.2, MEMORY, 1e9 + 1),
        (0.0101, CPU, 0.011),
        (0.97, GPU_TIME, 0.97),
        (0.9701, GPU_TIME, 0.971),
    ],
)
def test_a_size_is_rounded_up_to_a_whole_step(value, resource, expected) -> None:
    assert exported(value, resource) == expected


@pytest.mark.parametrize("resource", [MEMORY, CPU, GPU_TIME])
def test_an_idle_series_floor_reads_as_zero(resource) -> None:
    assert exported(1.2e-12, resource) == 0.0


def test_a_size_stays_within_zero_and_the_full_size() -> None:
    assert exported(1.164, GPU_TIME) == 1.0
    assert exported(-4.1e8, MEMORY) == 0.0
    assert exported(3e12, MEMORY) == 3e12


@pytest.mark.parametrize("resource", [MEMORY, CPU, GPU_TIME])
@pytest.mark.parametrize("value", [1.7e308, math.inf, -math.inf, math.nan])
def test_any_value_exports_as_a_finite_size(resource, value) -> None:
    size = exported(value, resource)

    assert math.isfinite(size)
    assert 0.0 <= size <= (resource.scale or PLAUSIBLE_MAX[resource.unit])
