"""Compares the alerts the receiver recorded with the replayed label windows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aiops_cli.replay import ReplayTrack


@dataclass
class TrackScore:
    query: str
    windows: int = 0
    caught: int = 0
    false_alarms: int = 0
    activations: list[int] = field(default_factory=list)  # rows where alerts began


def parse_time_ms(text: str) -> float:
    """Alertmanager's RFC 3339 times, with nanoseconds and a 'Z' or an offset."""
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def score_tracks(
    tracks: Sequence[ReplayTrack],
    anchors: Sequence[int],
    alerts: Iterable[Mapping],
    latency_ms: float,
) -> list[TrackScore]:
    """Match firing alert activations to each track's live label windows.

    An activation counts for a window when its row lies in the window or within
    `latency_ms` of wall time after it (query delay, `for:`, rule evaluation);
    any other activation is a false alarm.
    """
    starts: dict[str, set[float]] = {}
    for alert in alerts:
        labels = alert.get("labels", {})
        if labels.get("alertname") != "AiopsSeriesAnomaly":
            continue
        starts.setdefault(labels.get("query", ""), set()).add(
            parse_time_ms(alert["starts_at"])
        )

    scores = []
    for track, anchor in zip(tracks, anchors, strict=True):
        score = TrackScore(track.query)
        windows = track.live_windows()
        score.windows = len(windows)
        slack_rows = int(latency_ms // track.step_ms)
        rows = sorted(track.row_at(t, anchor) for t in starts.get(track.query, ()))
        score.activations = rows
        hit = set()
        for row in rows:
            matches = [
                i for i, (a, b) in enumerate(windows) if a <= row <= b + slack_rows
            ]
            if matches:
                hit.update(matches)
            else:
                score.false_alarms += 1
        score.caught = len(hit)
        scores.append(score)
    return scores


def action_line(action: dict) -> str:
    """One receiver action as the demo's summary shows it.

    It names the alert and the policy: a plan of "no action" alone, six
    times over, said nothing of what each line was about.
    """
    alert = action.get("labels", {}).get("alertname", "?")
    why = f" ({action['reason']})" if action.get("reason") else ""
    return (
        f"action [{action.get('mode')}/{action.get('result')}] {alert} by policy "
        f"{action.get('policy')}: {action.get('plan')}{why}"
    )
