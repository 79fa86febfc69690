"""Every panel query of the committed dashboards returns data from a real
Prometheus that scrapes the real exporter, detector and receiver.

The bundle runs as the demo runs it (aiops_cli.stack), plus two exporters of
GPU hosts over a fake NVML that replays GPUs recorded on real machines (an
H100 pair and an H200 pair in MIG mode, with Xid events). A host's memory,
pushed through remote write, jumps from its level together with one of its
process groups, so the detector decides it is anomalous, the diagnosis ranks
that group as its cause, AiopsSeriesAnomaly fires, and Alertmanager delivers
it to the receiver, which plans its action. The diagnosis runs with allow
lists that leave this test's own GPU processes out, and finds a user new to a
host whose earlier GPU users are backfilled with promtool; the optimizer runs
with a short warm-up and allocations read from the hosts' sizes. Every
dashboard then has something to show.

A target counts once it has returned data at any point of the run, as a
dashboard left open over that time would have shown it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from aiops_cli.remote_write import TimeSeries, push
from aiops_cli.replay import create_blocks
from aiops_cli.stack import Stack, Timing, environment_ok, find_binary
from detector.optimizer.config import DEFAULT_RESOURCES
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

# The pushed host: its memory (what the detector scores) and two process
# groups, one a second, the host and `leaky` jumping after the model is warm.
# The query is named host_memory, so that the diagnosis looks for its causes
# among the host's process groups (detector/diagnosis/incident.py).
PUSHED = "aiops_panel_check_memory_bytes"
PUSHED_HOST = "panel-check:0"
GROUPS = "aiops_process_group_resident_memory_bytes"
JUMP_AFTER_SECONDS = 12.0
GIB = float(1 << 30)

# The diagnosis over the run's short history. The anomaly window is a minute,
# which is also how long before now the history that tells new GPU users
# apart ends; no GPU user is allowed, so this test's own GPU processes are
# unowned, and its command is a "miner" by name.
DIAGNOSIS = {
    "window_seconds": 60,
    "baseline_seconds": 60,
    "step_seconds": 1,
    "allowed_gpu_users": ["aiops-allowed"],
    "auth_window_seconds": 60,
}
# A user who held the H200 host's GPUs an hour ago, backfilled, so that the
# host has GPU history and this test's user is new to it.
EARLIER_USER = "earlier-user"

# Allocations in force where nothing sets a limit: the whole host or GPU.
ALLOCATIONS = {
    "cpu_cores": "* 0 + on (instance) group_left () "
    "max by (instance) (aiops_host_logical_cpus)",
    "memory_bytes": "* 0 + on (instance) group_left () "
    "max by (instance) (aiops_host_memory_total_bytes)",
    "gpu_memory_bytes": "* 0 + on (instance, gpu, uuid) group_left () "
    "max by (instance, gpu, uuid) (aiops_gpu_memory_total_bytes)",
    "gpu_time_ratio": "* 0 + 1",
}
OPTIMIZER = {
    "interval_seconds": 5,
    "query_delay_seconds": 2,
    "history_seconds": 120,
    "resources": [
        {
            "resource": r.resource,
            "usage": r.usage,
            "allocation": f"{r.usage} {ALLOCATIONS[r.resource]}",
            "labels": list(r.labels),
            "step_seconds": 1,
            "warmup_seconds": 10,
            "period_seconds": 10,
        }
        for r in DEFAULT_RESOURCES
    ],
    "power": {
        "step_seconds": 1,
        "warmup_seconds": 10,
        "window_seconds": 60,
    },
}


def own_command() -> str:
    """This process' /proc comm: the command label of its GPU processes."""
    return Path(f"/proc/{os.getpid()}/comm").read_text().strip()


def backfill_gpu_history(instance: str, tsdb_dir: Path, work_dir: Path) -> None:
    """An hour of one earlier user's process on GPU 0 of `instance`, ending
    ten minutes ago, as TSDB blocks for Prometheus to start with."""
    now = time.time()
    path = work_dir / "gpu-history.om"
    labels = (
        f'instance="{instance}",job="aiops-exporter",gpu="0",'
        f'command="train",user="{EARLIER_USER}"'
    )
    lines = ["# TYPE aiops_gpu_processes gauge"]
    for minute in range(70, 10, -1):
        lines.append(f"aiops_gpu_processes{{{labels}}} 1 {now - 60 * minute:.3f}")
    path.write_text("\n".join([*lines, "# EOF"]) + "\n")
    create_blocks(find_binary("promtool"), path, tsdb_dir)


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


def describe(missing: dict[tuple[str, str, str], str]) -> str:
    return "panels without data:\n" + "\n".join(
        f"  {file} / {title!r} / {ref}: {expr}"
        for (file, title, ref), expr in sorted(missing.items())
    )


def open_report_link(stack: Stack, alertname: str, instance: str) -> requests.Response:
    """GET the incidents dashboard's report link of a firing alert's row, as
    Grafana fills it in, from the running receiver."""
    panels = json.loads((JSON_DIR / "incidents.json").read_text())["panels"]
    panel = next(p for p in panels if p["title"] == "Firing alerts")
    url = panel["fieldConfig"]["defaults"]["links"][0]["url"]
    for name, value in (
        ("${receiver}", stack.url("webhook")),
        ("${__data.fields.alertname}", alertname),
        ("${__data.fields.instance}", instance),
    ):
        url = url.replace(name, value)
    headers = {"Authorization": f"Bearer {stack.token}"}
    return requests.get(url, headers=headers, timeout=30)


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

    def __init__(self, url: str, gpu_hosts: tuple[GpuHost, ...]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.gpu_hosts = gpu_hosts
        self.stop = threading.Event()
        self.errors: list[Exception] = []
        self._noise = np.random.default_rng(8).normal(0.0, 0.05, size=(10_000, 3))

    def run(self) -> None:
        started = time.monotonic()
        host = {"instance": PUSHED_HOST, "job": "panel-check"}
        series = (
            {"__name__": PUSHED, **host},
            {"__name__": GROUPS, **host, "command": "leaky", "user": "panel"},
            {"__name__": GROUPS, **host, "command": "steady", "user": "panel"},
        )
        with requests.Session() as session:
            for noise in self._noise:
                if self.stop.is_set():
                    break
                jumped = time.monotonic() - started > JUMP_AFTER_SECONDS
                now_ms = int(time.time() * 1000)
                # GiB: the host holds both groups; leaky grows by 4 GiB.
                levels = (7.0, 5.0, 2.0) if jumped else (3.0, 1.0, 2.0)
                samples = [
                    TimeSeries(labels, ((now_ms, (level + n) * GIB),))
                    for labels, level, n in zip(series, levels, noise, strict=True)
                ]
                try:
                    push(session, self.url, samples)
                except Exception as exc:  # reported by the test, not lost
                    self.errors.append(exc)
                for gpu_host in self.gpu_hosts:
                    gpu_host.sample_kernels(now_ms * 1000)
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
            {"name": "host_memory", "promql": PUSHED, "step_seconds": 1.0}
        ],
        # The robust model decides within seconds, so the decision and band
        # panels have data; the ensemble would still be warming up.
        detector_model={
            "kind": "robust",
            "window": 60,
            "min_points": 5,
            "threshold": 6.0,
        },
        detector_settings={
            "diagnosis": {**DIAGNOSIS, "miner_names": [own_command()]},
            "optimizer": OPTIMIZER,
        },
        # Planned in dry-run by the worker, as the demo's CPU cap is, so the
        # action latencies have a sample.
        webhook_policies=[
            {
                "name": "panel-check",
                "match": {"alertname": "AiopsSeriesAnomaly", "query": "host_memory"},
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
        tsdb_dir = tmp_path / "prometheus-data"
        backfill_gpu_history(h200.target, tsdb_dir, tmp_path)
        stack.start(tsdb_dir)
        pusher = Pusher(stack.url("prometheus") + "/api/v1/write", (h100, h200))
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
        report = open_report_link(stack, "AiopsSeriesAnomaly", PUSHED_HOST)

    assert pusher.errors == []
    assert not missing, describe(missing)
    assert report.status_code == 200, report.text[:500]
    assert report.headers["Content-Type"].startswith("text/html")
    # An exemption that gets data is out of date: say so rather than keep it.
    assert seen & NO_DATA_HERE.keys() == set()
