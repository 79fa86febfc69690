"""One cycle of the engine against a real VictoriaMetrics, over the same API."""

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

BINARY = "victoria-metrics"
STEP = 15
POINTS = 479  # about two hours, from three hours ago to one hour ago
SPIKE = 300
SEED = 7


def free_port() -> int:
    # The port may be taken again before the server binds it; rare enough here.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(proc: subprocess.Popen, url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        # Waiting on the process both paces the polling and notices a crash.
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"victoria-metrics exited early with {proc.returncode}")
    pytest.fail(f"victoria-metrics at {url} not ready within {seconds}s")


def import_series(url: str, first: int) -> dict[int, float]:
    """Push the series in Prometheus text format, then make it searchable."""
    values = np.random.default_rng(SEED).normal(50.0, 1.0, POINTS)
    values[SPIKE] += 15.0
    samples = {first + i * STEP: float(v) for i, v in enumerate(values)}

    # VictoriaMetrics' text import takes millisecond timestamps.
    lines = [
        f'gpu_temp_celsius{{gpu="0"}} {v!r} {t * 1000}' for t, v in samples.items()
    ]
    response = requests.post(
        f"{url}/api/v1/import/prometheus", data="\n".join(lines) + "\n", timeout=10
    )
    response.raise_for_status()
    # Fresh samples sit in memory until a flush; this one is synchronous.
    requests.get(f"{url}/internal/force_flush", timeout=10).raise_for_status()
    return samples


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[tuple[str, dict[int, float]]]:
    if not shutil.which(BINARY):
        pytest.skip("needs the victoria-metrics binary (Debian: victoria-metrics)")

    url = f"http://127.0.0.1:{free_port()}"
    with open(tmp_path / "victoria.log", "wb") as log_file:
        proc = subprocess.Popen(
            [
                BINARY,
                f"-storageDataPath={tmp_path / 'data'}",
                f"-httpListenAddr={url.removeprefix('http://')}",
                "-retentionPeriod=1",
                # The samples are hours old; no answer may come from a cache
                # filled before the import.
                "-search.disableCache",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(proc, url, seconds=30)
        first = math.ceil((time.time() - 3 * 3600) / STEP) * STEP
        yield url, import_series(url, first)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_spike_in_victoriametrics_is_the_only_decision(victoria) -> None:
    url, samples = victoria
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
    assert engine.snapshot.query_errors == {"gpu_temp": 0}


def test_a_query_that_matches_nothing_is_no_error(victoria) -> None:
    url, _ = victoria
    config = DetectorConfig(
        prometheus_url=url,
        queries=(QueryConfig("none", "no_such_metric", step_seconds=STEP),),
    )

    with requests.Session() as session:
        engine = Engine(config, PrometheusClient(url, session, timeout=10))
        assert engine.run_cycle() is True

    assert engine.snapshot.series == ()
    assert engine.snapshot.query_errors == {"none": 0}
