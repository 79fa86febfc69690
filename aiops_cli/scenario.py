"""The demo's recorded input: which series are replayed, how fast, with what labels.

Two tracks: NAB's machine temperature before a system failure (two labelled
windows in the live part) and the busiest GPU pod of the Alibaba GenAI trace
with a stuck-at-100% fault injected and labelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiops_cli.datasets import LabelledSeries, inject_stuck, load_nab, load_pod_series
from aiops_cli.replay import ReplayTrack

NAB_SERIES = "realKnownCause/machine_temperature_system_failure.csv"
POD_FILE = "pod_gpu_duty_cycle.csv.gz"
DAY_ROWS = 288  # NAB's 5-minute step


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
        query="replay_temperature",
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


def _step_ms(live_seconds: float, rows: int) -> int:
    # Whole milliseconds: Prometheus stores millisecond timestamps.
    return max(10, int(live_seconds * 1000 / rows))
