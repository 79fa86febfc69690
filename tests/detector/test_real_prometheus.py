"""One cycle of the engine against a real Prometheus holding backfilled data."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.detector.backends import (
    STEP,
    assert_spike_is_the_only_decision,
    prometheus_over,
    score_one_cycle,
    spiky_values,
)

pytestmark = pytest.mark.integration


def backfill(path: Path, data_dir: Path, first: int) -> dict[int, float]:
    """Write the series as OpenMetrics and turn it into TSDB blocks."""
    values = spiky_values()
    samples = {first + i * STEP: float(v) for i, v in enumerate(values)}

    lines = ["# TYPE gpu_temp_celsius gauge"]
    lines += [f'gpu_temp_celsius{{gpu="0"}} {v!r} {t}' for t, v in samples.items()]
    path.write_text("\n".join(lines) + "\n# EOF\n")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", path, data_dir],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return samples


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, dict[int, float]]]:
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.skip("needs the prometheus and promtool binaries")

    first = math.ceil((time.time() - 3 * 3600) / STEP) * STEP
    samples = backfill(tmp_path / "series.om", tmp_path / "data", first)
    with prometheus_over(tmp_path / "data", tmp_path) as url:
        yield url, samples


def test_a_backfilled_spike_is_the_only_decision(prometheus) -> None:
    url, samples = prometheus
    engine, decisions = score_one_cycle(url)

    assert_spike_is_the_only_decision(samples, decisions)
    assert engine.snapshot.points_scored_total == len(decisions)
    assert engine.snapshot.query_errors == {"gpu_temp": 0}
