"""One cycle of the engine against a real VictoriaMetrics, over the same API."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from detector.config import DetectorConfig, QueryConfig
from detector.engine import Engine
from detector.prometheus import PrometheusClient
from tests.detector.backends import (
    STEP,
    assert_spike_is_the_only_decision,
    score_one_cycle,
    spiky_values,
    stop,
    wait_ready,
)
from tests.ports import free_port

pytestmark = pytest.mark.integration

BINARY = "victoria-metrics"


def import_series(url: str, first: int) -> dict[int, float]:
    """Push the series in Prometheus text format, then make it searchable."""
    values = spiky_values()
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
        wait_ready(proc, url + "/health", seconds=30)
        first = math.ceil((time.time() - 3 * 3600) / STEP) * STEP
        yield url, import_series(url, first)
    finally:
        stop(proc)


def test_a_spike_in_victoriametrics_is_the_only_decision(victoria) -> None:
    url, samples = victoria
    engine, decisions = score_one_cycle(url)

    assert_spike_is_the_only_decision(samples, decisions)
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
