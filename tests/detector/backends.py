"""What the real-backend tests share: the series, readiness, one scored cycle."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests

from detector.config import DetectorConfig, ModelConfig, QueryConfig
from detector.engine import Engine
from detector.prometheus import PrometheusClient
from tests.ports import free_port

STEP = 15
POINTS = 479  # about two hours, from three hours ago to one hour ago
SPIKE = 300
SEED = 7


def spiky_values() -> np.ndarray:
    values = np.random.default_rng(SEED).normal(50.0, 1.0, POINTS)
    values[SPIKE] += 15.0
    return values


def wait_ready(proc: subprocess.Popen, url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        # Waiting on the process both paces the polling and notices a crash.
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"server exited early with {proc.returncode}")
    pytest.fail(f"{url} not ready within {seconds}s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def prometheus_over(data: Path, work_dir: Path) -> Iterator[str]:
    """A real Prometheus on loopback serving the TSDB blocks in `data`; its URL."""
    config = work_dir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    url = f"http://127.0.0.1:{free_port()}"

    with open(work_dir / "prometheus.log", "wb") as log_file:
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(proc, url + "/-/ready", seconds=30)
        yield url
    finally:
        stop(proc)


def score_one_cycle(url: str) -> tuple[Engine, dict[float, int]]:
    """Run one engine cycle on gpu_temp_celsius; return it and every decision."""
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
    return engine, decisions


def assert_spike_is_the_only_decision(
    samples: dict[int, float], decisions: dict[float, int]
) -> None:
    spike = sorted(samples)[SPIKE]
    assert set(samples) <= set(decisions)
    assert decisions[spike] == 1
    assert [t for t, d in decisions.items() if d] == [spike]
