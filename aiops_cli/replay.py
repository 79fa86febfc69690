"""Replays recorded series into Prometheus on a compressed clock.

The older part of a series is backfilled into a TSDB block with promtool
before Prometheus starts; the rest is pushed live through remote write, one
sample every `step_ms` of wall time, so that the detector, the alert rules and
Alertmanager work on it as they would on live data.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from aiops_cli.datasets import LabelledSeries
from aiops_cli.remote_write import RemoteWriteError, TimeSeries, push

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayTrack:
    """One series, the detector query that scores it, and its replay span."""

    series: LabelledSeries
    metric: str
    labels: dict[str, str]
    query: str  # the detector query name whose alerts belong to this track
    live_from: int  # first row pushed live; rows before it are backfilled
    live_to: int  # one past the last row pushed
    step_ms: int  # wall time between two replayed rows
    history_rows: int = 10_000

    def live_windows(self) -> list[tuple[int, int]]:
        """Label windows that start inside the live span."""
        return [w for w in self.series.windows if self.live_from <= w[0] < self.live_to]

    def anchor(self, start_ms: int) -> int:
        """First live timestamp: at or after `start_ms`, on this track's step grid.

        The grid lets the detector's range queries land exactly on samples.
        """
        return -(-start_ms // self.step_ms) * self.step_ms

    def timestamp_ms(self, row: int, anchor_ms: int) -> int:
        return anchor_ms + (row - self.live_from) * self.step_ms

    def row_at(self, timestamp_ms: float, anchor_ms: int) -> int:
        return self.live_from + int((timestamp_ms - anchor_ms) // self.step_ms)


def write_backfill(
    tracks: Sequence[ReplayTrack], anchors: Sequence[int], path: Path
) -> int:
    """Write the history of every track as OpenMetrics; returns the sample count."""
    count = 0
    with path.open("w") as out:
        for track, anchor in zip(tracks, anchors, strict=True):
            first = max(0, track.live_from - track.history_rows)
            out.write(f"# TYPE {track.metric} gauge\n")
            selector = _selector(track.labels)
            for row in range(first, track.live_from):
                seconds = track.timestamp_ms(row, anchor) / 1000
                out.write(
                    f"{track.metric}{selector} {float(track.series.values[row])!r} "
                )
                out.write(f"{seconds:.3f}\n")
                count += 1
        out.write("# EOF\n")
    return count


def create_blocks(promtool: str, openmetrics: Path, tsdb_dir: Path) -> None:
    """Turn the OpenMetrics file into TSDB blocks under `tsdb_dir`."""
    result = subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(openmetrics),
            str(tsdb_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"promtool could not backfill {openmetrics}: {result.stderr.strip()[-500:]}"
        )


class LivePusher(threading.Thread):
    """Pushes each track's live rows when their timestamps come due."""

    def __init__(
        self,
        url: str,
        tracks: Sequence[ReplayTrack],
        anchors: Sequence[int],
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        period: float = 0.25,
    ) -> None:
        super().__init__(name="replay-pusher", daemon=True)
        self.url = url
        self.tracks = list(tracks)
        self.anchors = list(anchors)
        self.session = session or requests.Session()
        self.clock = clock
        self.period = period
        self.next_row = [t.live_from for t in self.tracks]
        self.errors = 0
        self.stopping = threading.Event()

    def done(self) -> bool:
        return all(
            n >= t.live_to for n, t in zip(self.next_row, self.tracks, strict=True)
        )

    def progress(self) -> float:
        spans = [
            (n - t.live_from, t.live_to - t.live_from)
            for n, t in zip(self.next_row, self.tracks, strict=True)
        ]
        return min(done / total for done, total in spans)

    def run(self) -> None:
        while not self.done() and not self.stopping.wait(self.period):
            self.push_due()

    def push_due(self) -> None:
        now_ms = int(self.clock() * 1000)
        batch = []
        ends = []
        for i, track in enumerate(self.tracks):
            last_due = track.row_at(now_ms, self.anchors[i])
            due = range(self.next_row[i], min(last_due + 1, track.live_to))
            ends.append(due[-1] + 1 if due else self.next_row[i])
            if due:
                samples = tuple(
                    (track.timestamp_ms(r, self.anchors[i]), track.series.values[r])
                    for r in due
                )
                batch.append(
                    TimeSeries({"__name__": track.metric, **track.labels}, samples)
                )
        if not batch:
            return

        try:
            push(self.session, self.url, batch)
        except RemoteWriteError as exc:
            # Rows stay due and go out with the next push.
            self.errors += 1
            log.warning("replay push failed, will retry: %s", exc)
            return
        self.next_row = ends


def _selector(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    pairs = (f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + ",".join(pairs) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
