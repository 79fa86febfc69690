"""The service writes its series' state at SIGTERM and takes it up at start."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from detector.checkpoint import FILE_NAME
from tests.detector.fakeprom import FakePrometheus
from tests.detector.test_main import CONFIG, free_port, wait_for, write_config


def serve_until_scored(config: str, url: str, state_dir: Path) -> tuple[str, str]:
    """Start the service, wait for a score, stop it; its metrics and stderr."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "detector",
        "--config.file",
        config,
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--prometheus.url",
        url,
        "--state.dir",
        str(state_dir),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        metrics = f"http://127.0.0.1:{port}/metrics"
        text = wait_for(proc, metrics, "aiops_anomaly_score{", seconds=20)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    return text, stderr


def test_state_written_at_sigterm_is_restored_at_the_next_start(
    tmp_path: Path, fake_prometheus: FakePrometheus
) -> None:
    fake_prometheus.series = [({"__name__": "temp", "gpu": "0"}, lambda t: 40.0)]
    config = write_config(tmp_path, CONFIG)
    state_dir = tmp_path / "state"

    first, stderr = serve_until_scored(config, fake_prometheus.url, state_dir)

    assert "aiops_detector_series_restored 0.0" in first
    assert "checkpoint written" in stderr
    assert stat.S_IMODE((state_dir / FILE_NAME).stat().st_mode) == 0o600

    second, stderr = serve_until_scored(config, fake_prometheus.url, state_dir)

    assert "aiops_detector_series_restored 1.0" in second
    assert "checkpoint restored" in stderr and "series=1" in stderr
