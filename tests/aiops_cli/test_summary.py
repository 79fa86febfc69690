from aiops_cli.datasets import LabelledSeries
from aiops_cli.replay import ReplayTrack
from aiops_cli.summary import action_line, parse_time_ms, score_tracks


def make_track() -> ReplayTrack:
    series = LabelledSeries("s", tuple(range(100)), (0.0,) * 100, ((40, 49), (80, 89)))
    return ReplayTrack(series, "m", {}, "q", live_from=20, live_to=100, step_ms=100)


def alert(query: str, ms: int) -> dict:
    seconds, millis = divmod(ms, 1000)
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "status": "firing",
        "labels": {"alertname": "AiopsSeriesAnomaly", "query": query},
        "starts_at": f"{stamp}.{millis:03d}123456Z",
    }


def test_alertmanager_nanosecond_times_parse():
    assert parse_time_ms("2026-12-04T16:03:26.428123456Z") == 1796400206428.123
    assert parse_time_ms("2026-12-04T16:03:26Z") == 1796400206000


def test_activations_inside_or_just_after_a_window_catch_it():
    track = make_track()
    anchor = 1_000_000
    row_ms = {row: anchor + (row - 20) * 100 for row in range(20, 100)}
    alerts = [
        alert("q", row_ms[45]),  # inside the first window
        alert("q", row_ms[52]),  # 0.3 s after it: within latency
        alert("q", row_ms[65]),  # nowhere near a window
        alert("other", row_ms[85]),  # another track's alert
    ]

    (score,) = score_tracks([track], [anchor], alerts, latency_ms=500)

    assert (score.windows, score.caught, score.false_alarms) == (2, 1, 1)
    assert score.activations == [45, 52, 65]


def test_an_action_line_names_its_alert_policy_and_reason():
    action = {
        "labels": {"alertname": "AiopsHostCpuAnomaly", "command": "hog"},
        "policy": "cap-hogs",
        "mode": "dry-run",
        "result": "skipped",
        "plan": "no action",
        "reason": "cooldown",
    }

    assert action_line(action) == (
        "action [dry-run/skipped] AiopsHostCpuAnomaly by policy cap-hogs: "
        "no action (cooldown)"
    )
