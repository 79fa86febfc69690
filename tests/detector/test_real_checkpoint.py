"""A restart from a checkpoint against a real Prometheus holding backfilled data."""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from detector.config import DetectorConfig, ModelConfig, QueryConfig
from detector.engine import Engine
from detector.prometheus import PrometheusClient
from tests.detector.backends import STEP, prometheus_over

pytestmark = pytest.mark.integration

POINTS = 1700  # about seven hours: the ensemble decides after ~1200 points
HISTORY_POINTS = 1400
FIRST_STOP = 1500  # the point the first run ends on
GAP = 40  # points that arrive while the detector is down
SEED = 11


class Recording:
    """A PrometheusClient that remembers every range asked for."""

    def __init__(self, client: PrometheusClient) -> None:
        self.client = client
        self.ranges: list[tuple[float, float]] = []

    def query_range(self, promql: str, start: float, end: float, step: float):
        self.ranges.append((start, end))
        return self.client.query_range(promql, start, end, step)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.skip("needs the prometheus and promtool binaries")

    first = math.ceil((time.time() - 8 * 3600) / STEP) * STEP
    values = np.random.default_rng(SEED).normal(50.0, 1.0, POINTS)
    lines = ["# TYPE gpu_temp_celsius gauge"]
    lines += [
        f'gpu_temp_celsius{{gpu="0"}} {v!r} {first + i * STEP}'
        for i, v in enumerate(values.tolist())
    ]
    series = tmp_path / "series.om"
    series.write_text("\n".join(lines) + "\n# EOF\n")
    data = tmp_path / "data"
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", series, data],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with prometheus_over(data, tmp_path) as url:
        yield url, first


def detector_config(url: str, state_dir: Path | None) -> DetectorConfig:
    return DetectorConfig(
        prometheus_url=url,
        query_delay_seconds=0.0,
        history_seconds=HISTORY_POINTS * STEP,
        queries=(QueryConfig("gpu_temp", "gpu_temp_celsius", step_seconds=STEP),),
        model=ModelConfig(kind="ensemble"),
        state_dir=str(state_dir) if state_dir else "",
    )


def run_until_stopped(engine: Engine) -> None:
    """One cycle of the service's loop, then the stop a SIGTERM would cause."""
    stopped = threading.Event()
    engine._sleep = lambda seconds: stopped.set()
    engine.run(stopped)


def test_restart_scores_the_gap_at_once_as_if_never_stopped(
    prometheus, tmp_path: Path
) -> None:
    url, first = prometheus
    down_at = first + FIRST_STOP * STEP
    back_at = down_at + GAP * STEP
    scores: dict[str, list] = {"restarted": [], "continuous": []}

    def observer(into: str):
        return lambda query, labels, timestamps, batch: scores[into].append(
            (timestamps, batch)
        )

    with requests.Session() as session:
        client = PrometheusClient(url, session, timeout=10)
        state_dir = tmp_path / "state"

        before = Engine(
            detector_config(url, state_dir), Recording(client), clock=Clock(down_at)
        )
        run_until_stopped(before)
        assert before.snapshot.series[0].score.warm

        after_client = Recording(client)
        after = Engine(
            detector_config(url, state_dir),
            after_client,
            clock=Clock(back_at),
            observer=observer("restarted"),
        )
        after.run_cycle()

        clock = Clock(down_at)
        continuous = Engine(
            detector_config(url, None),
            client,
            clock=clock,
            observer=observer("continuous"),
        )
        continuous.run_cycle()
        scores["continuous"].clear()
        clock.now = back_at
        continuous.run_cycle()

    assert after.checkpoint_status.series_restored == 1
    # Only the points since the checkpoint were asked for, not the history.
    assert after_client.ranges == [(down_at + STEP, back_at)]
    ((timestamps, restarted),) = scores["restarted"]
    assert len(timestamps) == GAP and all(s.warm for s in restarted)
    assert after.snapshot.series[0].points_seen == HISTORY_POINTS + 1 + GAP
    assert scores["restarted"] == scores["continuous"]
