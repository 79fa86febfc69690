"""The service writes its series' state at SIGTERM and takes it up at start."""

from __future__ import annotations

import stat
from pathlib import Path

from detector.checkpoint import FILE_NAME
from tests.detector.fakeprom import FakePrometheus
from tests.detector.test_main import (
    CONFIG,
    scored_then_stopped,
    start_detector,
    write_config,
)


def serve_until_scored(config: str, url: str, state_dir: Path) -> tuple[str, str]:
    """Start the service, wait for a score, stop it; its metrics and stderr."""
    proc, base = start_detector(config, url, "--state.dir", str(state_dir))
    text, stderr = scored_then_stopped(proc, base)
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
