"""The demo's recorded input: which series are replayed, how fast, with what labels.

Two tracks: NAB's machine temperature before a system failure (two labelled
windows in the live part) and the busiest GPU pod of the Alibaba GenAI trace
with a stuck-at-100% fault injected and labelled. Queries that the deployed
ensemble does not suit get a robust model section of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiops_cli.datasets import LabelledSeries, inject_stuck, load_nab, load_pod_series
from aiops_cli.replay import ReplayTrack

NAB_SERIES = "realKnownCause/machine_temperature_system_failure.csv"
POD_FILE = "pod_gpu_duty_cycle.csv.gz"
DAY_ROWS = 288  # NAB's 5-minute step

# Deployed in deploy/detector.yml; the demo's CPU hog runs against it.
HOST_CPU_QUERY = "host_cpu"
# The detector query of the replayed NAB series.
TEMPERATURE_QUERY = "replay_temperature"
# The ensemble (deploy/detector.yml's global model) first decides after this
# many points of a series: its core views calibrate, then SPOT's first batch.
ENSEMBLE_WARMUP_POINTS = 1152
ROBUST_MODEL: dict[str, Any] = {"kind": "robust"}


@dataclass(frozen=True)
class DetectorQuery:
    name: str
    promql: str
    step_seconds: float

    def as_config(self) -> dict[str, object]:
        return {
            "name": self.name,
            "promql": self.promql,
            "step_seconds": self.step_seconds,
        }


def build_tracks(
    nab_dir: Path, alibaba_dir: Path, live_seconds: float
) -> list[ReplayTrack]:
    """The demo's tracks, each paced so that its live part lasts `live_seconds`."""
    temperature = load_nab(nab_dir, NAB_SERIES)
    # Live from a day before the second-to-last window to a day after the last:
    # the detector has learnt the earlier weeks, including two failures.
    (third_start, _), (_, fourth_end) = temperature.windows[-2:]
    live_from = max(0, third_start - DAY_ROWS)
    live_to = min(len(temperature.values), fourth_end + DAY_ROWS)
    nab_track = ReplayTrack(
        series=temperature,
        metric="aiops_replay_machine_temperature_celsius",
        labels={"instance": "nab-machine", "source": "nab"},
        query=TEMPERATURE_QUERY,
        live_from=live_from,
        live_to=live_to,
        step_ms=_step_ms(live_seconds, live_to - live_from),
        history_rows=live_from,
    )

    pod_file = alibaba_dir / POD_FILE
    if not pod_file.exists():
        pod_file = pod_file.with_suffix("")  # an uncompressed copy
    pod = load_pod_series(pod_file)
    # The trace gives percent; the exporter's GPU series are ratios.
    ratio = LabelledSeries(
        pod.name, pod.timestamps, tuple(v / 100 for v in pod.values), ()
    )
    half = len(ratio.values) // 2
    # An hour stuck at full use in the middle of the live half: a hung kernel.
    faulty = inject_stuck(ratio, start=half + half // 2, length=60, value=1.0)
    pod_track = ReplayTrack(
        series=faulty,
        metric="aiops_replay_gpu_utilization_ratio",
        labels={
            "instance": "genai-pod",
            "container": pod.name[:12],
            "source": "alibaba",
        },
        query="replay_gpu",
        live_from=half,
        live_to=len(faulty.values),
        step_ms=_step_ms(live_seconds, len(faulty.values) - half),
        history_rows=half,
    )
    return [nab_track, pod_track]


def detector_queries(tracks: list[ReplayTrack]) -> list[DetectorQuery]:
    return [DetectorQuery(t.query, t.metric, t.step_ms / 1000) for t in tracks]


def detector_models(
    tracks: list[ReplayTrack], history_seconds: float
) -> dict[str, dict[str, Any]]:
    """Per-query model sections for the queries the ensemble does not suit.

    The rest keep the deployed ensemble. `history_seconds` is how far back the
    detector's first query reaches.
    """
    models: dict[str, dict[str, Any]] = {
        # This host's CPU is a fresh series: the exporter starts with the demo
        # and scrapes once a second, so the live part holds ~200 points.
        HOST_CPU_QUERY: ROBUST_MODEL,
        # NAB's machine temperature: its 15,769 backfilled rows do warm the
        # ensemble, but in the demo it alarmed on neither live window (and in
        # benchmarks/eval_detector.py on one of the file's four); the robust
        # model catches both, with 2 false alarms.
        TEMPERATURE_QUERY: ROBUST_MODEL,
    }
    for track in tracks:
        backfilled = min(track.history_rows, track.live_from)
        readable = min(backfilled, int(history_seconds * 1000 // track.step_ms))
        if readable < ENSEMBLE_WARMUP_POINTS:
            models[track.query] = ROBUST_MODEL
    return models


def _step_ms(live_seconds: float, rows: int) -> int:
    # Whole milliseconds: Prometheus stores millisecond timestamps.
    return max(10, int(live_seconds * 1000 / rows))
