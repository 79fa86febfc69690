"""The whole loop with real binaries: replayed series -> Prometheus -> detector
-> alert rule -> Alertmanager -> receiver's audit log."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests

from aiops_cli.datasets import LabelledSeries
from aiops_cli.replay import LivePusher, ReplayTrack, create_blocks, write_backfill
from aiops_cli.stack import Stack, Timing, environment_ok, find_binary
from aiops_cli.summary import score_tracks

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not environment_ok(), reason="needs prometheus binaries"),
]

HISTORY, LIVE, SPIKE_AT = 400, 160, 500
STEP_MS = 100


def seasonal_series(name: str, seed: int, spike: bool) -> LabelledSeries:
    rng = np.random.default_rng(seed)
    rows = np.arange(HISTORY + LIVE)
    values = 50 + 10 * np.sin(rows * 2 * np.pi / 96) + rng.normal(0, 1, rows.size)
    windows: tuple[tuple[int, int], ...] = ()
    if spike:
        values[SPIKE_AT : SPIKE_AT + 20] += 60
        windows = ((SPIKE_AT, SPIKE_AT + 19),)
    return LabelledSeries(name, tuple(float(r) for r in rows), tuple(values), windows)


def track(series: LabelledSeries, query: str) -> ReplayTrack:
    return ReplayTrack(
        series=series,
        metric="aiops_test_replay_value",
        labels={"instance": query, "case": query},
        query=query,
        live_from=HISTORY,
        live_to=HISTORY + LIVE,
        step_ms=STEP_MS,
        history_rows=HISTORY,
    )


def receiver_alerts(stack: Stack) -> list[dict]:
    response = requests.get(
        stack.url("webhook") + "/api/v1/alerts?limit=1000",
        headers={"Authorization": f"Bearer {stack.token}"},
        timeout=5,
    )
    response.raise_for_status()
    body = response.json()
    return body["data"] if isinstance(body, dict) else body


def test_anomalous_series_alerts_and_normal_series_does_not(tmp_path):
    tracks = [
        track(seasonal_series("spiky", seed=1, spike=True), "spiky"),
        track(seasonal_series("calm", seed=2, spike=False), "calm"),
    ]
    anchors = [t.anchor(int(time.time() * 1000)) for t in tracks]
    tsdb = tmp_path / "tsdb"
    tsdb.mkdir()
    write_backfill(tracks, anchors, tmp_path / "history.om")
    create_blocks(find_binary("promtool"), tmp_path / "history.om", tsdb)
    queries = [
        {
            "name": t.query,
            "promql": f'{t.metric}{{case="{t.query}"}}',
            "step_seconds": STEP_MS / 1000,
        }
        for t in tracks
    ]
    stack = Stack(
        run_dir=tmp_path / "run",
        timing=Timing(query_delay_seconds=2.0, detector_history_seconds=120),
        detector_queries=queries,
        # The robust model: HISTORY + LIVE points are far short of the ~1,150
        # the ensemble (deploy/detector.yml's default) needs to decide.
        detector_model={
            "kind": "robust",
            "window": 96,
            "min_points": 30,
            "threshold": 6.0,
        },
    )

    with stack:
        stack.start(tsdb)
        pusher = LivePusher(stack.url("prometheus") + "/api/v1/write", tracks, anchors)
        pusher.start()
        pusher.join(timeout=LIVE * STEP_MS / 1000 + 30)
        assert pusher.done() and pusher.errors == 0

        deadline = time.monotonic() + 45
        firing: list[dict] = []
        while time.monotonic() < deadline:
            firing = [
                a
                for a in receiver_alerts(stack)
                if a["status"] == "firing" and a["labels"].get("query") == "spiky"
            ]
            if firing:
                break
            time.sleep(0.5)
        # Give a false alarm on the calm series the same time to show up.
        time.sleep(stack.timing.query_delay_seconds + 3)
        alerts = receiver_alerts(stack)

    calm = [a for a in alerts if a["labels"].get("query") == "calm"]
    assert firing, "the spike produced no alert at the receiver"
    assert firing[0]["labels"]["alertname"] == "AiopsSeriesAnomaly"
    assert calm == []
    spiky, quiet = score_tracks(tracks, anchors, alerts, latency_ms=10_000)
    assert (spiky.windows, spiky.caught, spiky.false_alarms) == (1, 1, 0)
    assert (quiet.windows, quiet.false_alarms) == (0, 0)
