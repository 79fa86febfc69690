from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from detector.config import DetectorConfig, QueryConfig
from detector.main import log_optimizer, main, optimizer_in_shard, size_until
from detector.optimizer import prior
from detector.optimizer.config import OptimizerConfig, ResourceQuery
from tests.detector.fakeprom import FakePrometheus
from tests.ports import free_port

CONFIG = """
queries:
  - name: gpu_temp
    promql: DCGM_FI_DEV_GPU_TEMP
model:
  window: 20
  min_points: 5
"""


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "detector.yml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("extra_args", "text", "key"),
    [
        ([], CONFIG + "interval_seconds: -1\n", "interval_seconds"),
        ([], "log_level: info\n", "queries"),
        (["--web.listen-address", "nowhere"], CONFIG, "listen_address"),
        (["--prometheus.url", "ftp://x"], CONFIG, "prometheus_url"),
        (["--log.level", "loud"], CONFIG, "log_level"),
        (["--shard", "2/2"], CONFIG, "shard"),
    ],
)
def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra_args: list[str],
    text: str,
    key: str,
) -> None:
    argv = ["--config.file", write_config(tmp_path, text), *extra_args]

    assert main(argv) == 2

    err = capsys.readouterr().err
    assert err.startswith("aiops-detector: ")
    assert key in err


def test_bad_environment_override_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIOPS_DETECTOR_MAX_SERIES", "0")

    assert main(["--config.file", write_config(tmp_path, CONFIG)]) == 2
    assert "max_series" in capsys.readouterr().err


def test_bandit_prior_without_its_weights_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(prior, "SHIPPED", tmp_path / "prior.json")
    text = CONFIG + "optimizer:\n  policy: bandit-prior\n"

    assert main(["--config.file", write_config(tmp_path, text)]) == 2

    err = capsys.readouterr().err
    assert "optimizer.policy: 'bandit-prior' needs the weights" in err
    assert "make train-optimizer" in err


def test_the_optimizer_says_what_it_sizes(caplog: pytest.LogCaptureFixture) -> None:
    config = OptimizerConfig(
        resources=(ResourceQuery("memory_bytes", "x_bytes"),), power=None
    )

    with caplog.at_level(logging.INFO, logger="detector.main"):
        log_optimizer(config)

    assert caplog.messages == [
        "optimizer on policy=bandit resources=memory_bytes power=off "
        "interval_seconds=300"
    ]


def test_an_optimizer_turned_off_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="detector.main"):
        log_optimizer(None)

    assert caplog.messages == ["optimizer off; set `optimizer: {}` for its defaults"]


def test_only_shard_0_runs_the_optimizer(caplog: pytest.LogCaptureFixture) -> None:
    # Every shard reads the same file; two replicas sizing every series would
    # export each recommendation twice.
    optimizer = OptimizerConfig(power=None)
    queries = (QueryConfig("cpu", "cpu_ratio"),)
    first = DetectorConfig(queries=queries, optimizer=optimizer, shard="0/2")
    second = dataclasses.replace(first, shard="1/2")

    with caplog.at_level(logging.INFO, logger="detector.main"):
        log_optimizer(second.optimizer, second.shard)

    assert optimizer_in_shard(first) is optimizer
    assert optimizer_in_shard(second) is None
    assert caplog.messages == ["optimizer off in shard 1/2; shard 0 sizes every series"]


class CountingOptimizer:
    """Fails its first cycle, then stops the loop at its third."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.cycles = 0

    def run_cycle(self) -> bool:
        self.cycles += 1
        if self.cycles == 1:
            raise RuntimeError("a fault outside the stages")
        if self.cycles == 3:
            self.stop.set()
        return True


def test_the_optimizer_thread_outlives_a_failed_cycle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = threading.Event()
    optimizer = CountingOptimizer(stop)

    with caplog.at_level(logging.ERROR, logger="detector.main"):
        size_until(optimizer, stop, poll=0.0)  # type: ignore[arg-type]

    assert optimizer.cycles == 3
    assert caplog.messages == ["optimizer cycle failed; trying again next interval"]


def wait_for(proc: subprocess.Popen, url: str, needle: str, seconds: float) -> str:
    """Poll `url` until its body holds `needle`; the pause is a wait on `proc`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=1)
            if response.status_code == 200 and needle in response.text:
                return response.text
        except requests.ConnectionError:
            pass
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"service exited early with {proc.returncode}")
    pytest.fail(f"{url} did not show {needle!r} within {seconds}s")


def start_detector(
    config_file: str, prometheus_url: str, *flags: str
) -> tuple[subprocess.Popen[str], str]:
    """The detector as a process of its own on a free port; returns it, its URL."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "detector",
        "--config.file",
        config_file,
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--prometheus.url",
        prometheus_url,
        *flags,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return proc, f"http://127.0.0.1:{port}"


def scored_then_stopped(
    proc: subprocess.Popen[str],
    base: str,
    while_up: Callable[[str], None] = lambda base: None,
) -> tuple[str, str]:
    """Wait for a score, call `while_up(base)`, stop the detector by SIGTERM;
    its metrics and stderr. It is killed whatever fails."""
    try:
        text = wait_for(proc, f"{base}/metrics", "aiops_anomaly_score{", seconds=20)
        while_up(base)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return text, stderr


def test_service_serves_scores_and_stops_on_sigterm(
    tmp_path: Path, fake_prometheus: FakePrometheus
) -> None:
    fake_prometheus.series = [({"__name__": "temp", "gpu": "0"}, lambda t: 40.0)]
    proc, base = start_detector(write_config(tmp_path, CONFIG), fake_prometheus.url)
    answers = {}

    def ask(base: str) -> None:
        answers["health"] = requests.get(f"{base}/-/healthy", timeout=1).text
        answers["elsewhere"] = requests.get(f"{base}/elsewhere", timeout=1).status_code

    text, stderr = scored_then_stopped(proc, base, ask)

    assert 'aiops_anomaly_observed_value{gpu="0",query="gpu_temp"} 40.0' in text
    assert "aiops_diagnosis_last_success_timestamp_seconds" in text
    assert "aiops_detector_prometheus_up 1.0" in text
    assert answers == {"health": "Healthy.\n", "elsewhere": 404}
    assert proc.returncode == 0, stderr
    assert "detector started" in stderr
    assert "msg=optimizer off" in stderr
    assert "shutting down signal=SIGTERM" in stderr


def test_a_diagnosis_turned_off_exports_nothing_of_it(
    tmp_path: Path, fake_prometheus: FakePrometheus
) -> None:
    # Its last success would stay 0 and read as a diagnosis that stopped.
    fake_prometheus.series = [({"__name__": "temp", "gpu": "0"}, lambda t: 40.0)]
    config = write_config(tmp_path, CONFIG + "diagnosis:\n  enabled: false\n")

    text, stderr = scored_then_stopped(*start_detector(config, fake_prometheus.url))

    assert "aiops_diagnosis_" not in text
    assert "msg=diagnosis off" in stderr
