"""One cycle of the engine against a real Prometheus holding backfilled data."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from detector.config import DetectorConfig, ModelConfig, QueryConfig
from detector.engine import Engine
from detector.prometheus import PrometheusClient

pytestmark = pytest.mark.integration

STEP = 15
POINTS = 479  # about two hours, from three hours ago to one hour ago
SPIKE = 300
SEED = 7


def free_port() -> int:
    # The port may be taken again before Prometheus binds it; rare enough here.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def backfill(path: Path, data_dir: Path, first: int) -> dict[int, float]:
    """Write the series as OpenMetrics and turn it into TSDB blocks."""
    values = np.random.default_rng(SEED).normal(50.0, 1.0, POINTS)
    values[SPIKE] += 15.0
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


def wait_ready(proc: subprocess.Popen, url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        # Waiting on the process both paces the polling and notices a crash.
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"prometheus exited early with {proc.returncode}")
    pytest.fail(f"prometheus at {url} not ready within {seconds}s")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, dict[int, float]]]:
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.skip("needs the prometheus and promtool binaries")

    first = math.ceil((time.time() - 3 * 3600) / STEP) * STEP
    samples = backfill(tmp_path / "series.om", tmp_path / "data", first)
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    url = f"http://127.0.0.1:{free_port()}"

    with open(tmp_path / "prometheus.log", "wb") as log_file:
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(proc, url, seconds=30)
        yield url, samples
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_backfilled_spike_is_the_only_decision(prometheus) -> None:
    url, samples = prometheus
    config = DetectorConfig(
        prometheus_url=url,
        history_seconds=4 * 3600,
        queries=(QueryConfig("gpu_temp", "gpu_temp_celsius", step_seconds=STEP),),
        model=ModelConfig(kind="robust", window=288, min_points=30, threshold=6.0),
    )
    decisions: dict[float, int] = {}

    def observer(query, labels, timestamps, scores) -> None:
        assert (query, labels) == ("gpu_temp", {"gpu": "0"})
        decisions.update(
            (t, s.decision) for t, s in zip(timestamps, scores, strict=True)
        )

    with requests.Session() as session:
        client = PrometheusClient(url, session, timeout=10)
        engine = Engine(config, client, observer=observer)
        assert engine.run_cycle() is True

    spike = sorted(samples)[SPIKE]
    assert set(samples) <= set(decisions)
    assert decisions[spike] == 1
    assert [t for t, d in decisions.items() if d] == [spike]
    assert engine.snapshot.points_scored_total == len(decisions)
    assert engine.snapshot.query_errors == {"gpu_temp": 0}
