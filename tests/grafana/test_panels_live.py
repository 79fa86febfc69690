"""Every panel query of the committed dashboards returns data from a real
Prometheus that scrapes the real exporter, detector and receiver.

The bundle runs as the demo runs it (aiops_cli.stack), plus two exporters of
GPU hosts over a fake NVML that replays GPUs recorded on real machines (an
H100 pair and an H200 pair in MIG mode, with Xid events). A series pushed
through remote write jumps from its level, so the detector decides it is
anomalous, AiopsSeriesAnomaly fires, and Alertmanager delivers it to the
receiver, which plans its action: every dashboard then has something to show.
A target counts once it has returned data at any point of the run, as a
dashboard left open over that time would have shown it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from aiops_cli.remote_write import TimeSeries, push
from aiops_cli.stack import Stack, Timing, environment_ok
from tests.exporter.fake_nvml import H100, H200
from tests.grafana.gpu_hosts import GpuHost

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not environment_ok(), reason="needs prometheus binaries"),
]

JSON_DIR = Path(__file__).resolve().parents[2] / "grafana" / "json"
DEADLINE_SECONDS = 75.0

# What Grafana puts in place of its variables: every value of the dashboard's
# own variables ("All"), and intervals that fit the stack's 1 s scrapes.
SUBSTITUTIONS = {
    "$__rate_interval": "5s",
    "$__range": "5m",
    "$instance": ".*",
    "$gpu": ".*",
    "$query": ".*",
}

# Targets that cannot have data here, with the reason. Each stays a valid
# query (Prometheus must accept it); only its emptiness is allowed.
NO_DATA_HERE = {
    ("gpu-detail.json", "Performance state and fan", "B"): (
        "fan speed: both recorded GPUs (H100 SXM, H200) are passively cooled"
    ),
    ("gpu-detail.json", "Retired pages (GPUs before Ampere)", "A"): (
        "page retirement: GPUs before Ampere only; the recorded ones remap rows"
    ),
    ("gpu-detail.json", "Retired pages (GPUs before Ampere)", "B"): (
        "page retirement: GPUs before Ampere only; the recorded ones remap rows"
    ),
    ("actions.json", "Actuator time (p99)", "A"): (
        "actuators only run outside dry-run; the deployed receiver is in dry-run"
    ),
}

# The detector query over the pushed series: one point a second, a jump from
# 1 to 5 after the model is warm.
PUSHED = "aiops_panel_check_value"
JUMP_AFTER_SECONDS = 12.0


def panel_targets() -> list[tuple[str, str, str, str]]:
    """(file, panel title, refId, expr) of every target of every dashboard."""
    found = []
    for path in sorted(JSON_DIR.glob("*.json")):
        panels = json.loads(path.read_text())["panels"]
        for panel in panels + [p for row in panels for p in row.get("panels", [])]:
            for target in panel.get("targets", []):
                found.append(
                    (path.name, panel["title"], target["refId"], target["expr"])
                )
    return found


def substitute(expr: str) -> str:
    for name in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(name, SUBSTITUTIONS[name])
    return expr


class Pusher(threading.Thread):
    """Pushes the level-then-jump series once a second until stopped.

    The level has a little seeded noise, so that the model's spread is that
    noise and the jump stays far outside the band until it fills half the
    window, rather than for one point.
    """

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.errors: list[Exception] = []
        self._noise = np.random.default_rng(8).normal(0.0, 0.05, size=10_000)

    def run(self) -> None:
        started = time.monotonic()
        labels = {"__name__": PUSHED, "instance": "panel-check:0", "job": "panel-check"}
        with requests.Session() as session:
            for noise in self._noise:
                if self.stop.is_set():
                    break
                jumped = time.monotonic() - started > JUMP_AFTER_SECONDS
                sample = ((int(time.time() * 1000), (5.0 if jumped else 1.0) + noise),)
                try:
                    push(session, self.url, [TimeSeries(labels, sample)])
                except Exception as exc:  # reported by the test, not lost
                    self.errors.append(exc)
                # The series' own clock: one sample a second, as a scrape would.
                self.stop.wait(1.0)


def query(session: requests.Session, base: str, expr: str) -> list:
    response = session.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body.get("status") == "success", f"{expr!r}: {body}"
    return body["data"]["result"]


def test_every_panel_query_returns_data(tmp_path):
    targets = panel_targets()
    stack = Stack(
        run_dir=tmp_path / "run",
        timing=Timing(query_delay_seconds=2.0, detector_history_seconds=120),
        detector_queries=[
            {"name": "panel_check", "promql": PUSHED, "step_seconds": 1.0}
        ],
        detector_model={"window": 60, "min_points": 5, "threshold": 6.0},
        # Planned in dry-run by the worker, as the demo's CPU cap is, so the
        # action latencies have a sample.
        webhook_policies=[
            {
                "name": "panel-check",
                "match": {"alertname": "AiopsSeriesAnomaly", "query": "panel_check"},
                "action": "command",
                "argv": ["true"],
            }
        ],
    )

    with (
        GpuHost(H100) as h100,
        GpuHost(H200, xids=((0, 79), (1, 13))) as h200,
        stack,
    ):
        stack.extra_targets = {"aiops-exporter": [h100.target, h200.target]}
        stack.start()
        pusher = Pusher(stack.url("prometheus") + "/api/v1/write")
        pusher.start()

        seen: set[tuple[str, str, str]] = set()
        deadline = time.monotonic() + DEADLINE_SECONDS
        with requests.Session() as session:
            while True:
                for file, title, ref, expr in targets:
                    if (file, title, ref) in seen:
                        continue
                    if query(session, stack.url("prometheus"), substitute(expr)):
                        seen.add((file, title, ref))
                missing = {
                    (file, title, ref): expr
                    for file, title, ref, expr in targets
                    if (file, title, ref) not in seen | NO_DATA_HERE.keys()
                }
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
        pusher.stop.set()
        pusher.join(5)

    assert pusher.errors == []
    assert missing == {}
    # An exemption that gets data is out of date: say so rather than keep it.
    assert seen & NO_DATA_HERE.keys() == set()
