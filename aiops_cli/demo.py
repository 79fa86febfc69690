"""`aiops demo`: the whole bundle on this machine, on real recorded data.

Backfills the history of the recorded series, starts Prometheus, Alertmanager
and the three services on 127.0.0.1, replays the rest live, starts a CPU hog
on this host, and reports what the receiver got, ending with one line
`DEMO SUMMARY <json>`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import requests

from aiops_cli.cpu_hog import CpuHog
from aiops_cli.datasets import DatasetError
from aiops_cli.progress import ProgressBar
from aiops_cli.replay import LivePusher, create_blocks, write_backfill
from aiops_cli.scenario import build_tracks, detector_models, detector_queries
from aiops_cli.stack import Stack, StackError, Timing, find_binary
from aiops_cli.summary import action_line, score_tracks

log = logging.getLogger(__name__)

HOG_COMMAND = "demo-cpu-hog"
HOG_CAP_CORES = 0.25
# The receiver's managed cgroup in the demo, apart from a deployed receiver's.
DEMO_CGROUP = "aiops-demo"
CGROUP_MOUNT = Path("/sys/fs/cgroup")
DECIDED = ("planned", "pending", "approved", "running", "applied")

# The data sets are given beside every checkout, as ../shared/data.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the whole bundle on recorded data and a live CPU hog"
    )
    demo.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("AIOPS_DATA_DIR", DEFAULT_DATA_DIR)),
        help="folder with nab/ and alibaba-genai/ (default: ../shared/data, "
        "or $AIOPS_DATA_DIR)",
    )
    demo.add_argument(
        "--nab", type=Path, help="a NAB layout or checkout (default: DATA/nab)"
    )
    demo.add_argument(
        "--alibaba",
        type=Path,
        help="folder with pod_gpu_duty_cycle.csv[.gz] (default: DATA/alibaba-genai)",
    )
    demo.add_argument(
        "--live-seconds",
        type=_positive_seconds,
        default=200.0,
        help="length of the live replay",
    )
    demo.add_argument(
        "--keep", action="store_true", help="leave the bundle running afterwards"
    )
    demo.add_argument(
        "--run-dir",
        type=_fresh_run_dir,
        help="where configs, data and logs go (a new or empty folder)",
    )
    demo.set_defaults(run=run)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _fresh_run_dir(text: str) -> Path:
    # A previous run's receiver database and TSDB would be read back: its
    # alerts and actions counted in this run's summary, scored against this
    # run's windows as false alarms.
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    if path.is_dir() and any(path.iterdir()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not empty (a previous run's?); give a new or empty folder"
        )
    return path


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run(args: argparse.Namespace) -> int:
    # SIGTERM, and SIGHUP from a closed terminal, end the demo the way Ctrl-C
    # does, so that the `finally` below still stops every process it started.
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_interrupt)
    try:
        run_demo(
            args.nab or args.data / "nab",
            args.alibaba or args.data / "alibaba-genai",
            args.live_seconds,
            args.keep,
            args.run_dir,
        )
    except DatasetError as exc:
        # Bad input, as the backtests answer it.
        print(
            f"aiops demo: {exc}; the data folder is {str(args.data)!r}: set "
            "another with --data or $AIOPS_DATA_DIR (make demo DATA=...)",
            file=sys.stderr,
        )
        return 2
    except StackError as exc:
        print(f"aiops demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "aiops demo: interrupted; everything it started is stopped", file=sys.stderr
        )
        return 130
    return 0


def _raise_interrupt(signum: int, frame: object) -> None:
    # Once only: a second signal (make forwards a SIGTERM sent to its group to
    # the demo too; Ctrl-C pressed twice) broke off the stopping of services
    # that run in sessions of their own, and left them running.
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
    raise KeyboardInterrupt


def run_demo(
    nab_dir: Path,
    alibaba_dir: Path,
    live_seconds: float = 200.0,
    keep: bool = False,
    run_dir: Path | None = None,
    out: TextIO = sys.stdout,
) -> dict[str, Any]:
    say = _printer(out)

    say(f"reading recorded series from {nab_dir} and {alibaba_dir}")
    tracks = build_tracks(nab_dir, alibaba_dir, live_seconds)
    # Made once the data has been read: bad data leaves no empty folder.
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="aiops-demo-"))
    anchors = [t.anchor(int(time.time() * 1000)) for t in tracks]
    for track in tracks:
        say(
            f"  {track.query}: {track.series.name}, {track.live_from} rows backfilled, "
            f"{track.live_to - track.live_from} replayed live, one every "
            f"{track.step_ms} ms, {len(track.live_windows())} labelled windows live"
        )

    tsdb_dir = run_dir / "prometheus-data"
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    openmetrics = run_dir / "backfill.om"
    samples = write_backfill(tracks, anchors, openmetrics)
    create_blocks(find_binary("promtool"), openmetrics, tsdb_dir)
    say(f"backfilled {samples} samples into Prometheus' TSDB with promtool")

    timing = Timing()
    models = detector_models(tracks, timing.detector_history_seconds)
    say(
        "  models: robust for "
        + ", ".join(sorted(models))
        + "; the ensemble (as deployed) for the rest"
    )
    stack = Stack(
        run_dir=run_dir,
        timing=timing,
        detector_queries=[q.as_config() for q in detector_queries(tracks)],
        detector_query_models=models,
        # Only the hog the demo starts is capped for real; an alert naming any
        # other process group is planned in dry-run, as deployed.
        webhook_policies=[
            {
                "name": "demo-cap-hog",
                "match": {"alertname": "AiopsHostCpuAnomaly", "command": HOG_COMMAND},
                "action": "cpu_cap",
                "params": {"cpu_cores": HOG_CAP_CORES, "fallback_nice": 19},
                "mode": "apply",
                # The cap is what ends the anomaly; lifting it when the alert
                # resolves would only start the hog again.
                "restore_on_resolve": False,
            }
        ],
        webhook_mode="apply",
        webhook_settings={"cgroup_name": DEMO_CGROUP},
    )
    hog = CpuHog(HOG_COMMAND)
    try:
        stack.start(tsdb_dir)
        say(
            "started on 127.0.0.1: "
            + ", ".join(f"{n} {stack.url(n)}" for n in stack.ports)
        )
        summary = _run_live(stack, tracks, anchors, hog, live_seconds, say)
        if keep:
            say("KEEP is set: the bundle keeps running; stop it with Ctrl-C")
            say(f"logs and configs in {run_dir}")
            _print_urls(stack, say)
            _wait_forever()
    finally:
        hog.stop()
        stack.stop()
        _remove_empty_cgroups(DEMO_CGROUP)
        if not keep:
            say(
                f"stopped every process the demo started; logs and configs in {run_dir}"
            )

    print("DEMO SUMMARY " + json.dumps(summary, sort_keys=True), file=out, flush=True)
    return summary


def _run_live(stack, tracks, anchors, hog, live_seconds, say) -> dict[str, Any]:
    pusher = LivePusher(stack.url("prometheus") + "/api/v1/write", tracks, anchors)
    pusher.start()
    hog_start, hog_stop = 0.35 * live_seconds, 0.65 * live_seconds
    began = time.monotonic()
    bar = ProgressBar("replaying", live_seconds, stream=sys.stderr)
    cpu = {"before_hog": None, "with_hog": None, "after_cap": None}
    capped_at = None
    hog_started = False

    while pusher.is_alive():
        elapsed = time.monotonic() - began
        if not hog_started and hog_start <= elapsed < hog_stop:
            hog_started = True
            cpu["before_hog"] = _host_cpu(stack)
            hog.start(processes=2)
            say(f"\nstarted {HOG_COMMAND} (pids {hog.pids}) to burn this host's CPU")
        if hog.pids and capped_at is None and _hog_capped(stack):
            capped_at = time.monotonic()
            cpu["with_hog"] = _host_cpu(stack)
            say(f"\nthe receiver capped {HOG_COMMAND} at {HOG_CAP_CORES} cores")
        if hog.pids and (
            elapsed >= hog_stop or (capped_at and time.monotonic() - capped_at > 15)
        ):
            if capped_at:
                cpu["after_cap"] = _host_cpu(stack)
            else:
                # Never capped: the figure with it still shows how busy the
                # host was, which is why the hog may not have stood out.
                cpu["with_hog"] = _host_cpu(stack)
            hog.stop()
        bar.update(pusher.progress() * live_seconds)
        pusher.join(timeout=1.0)
    bar.close()

    # Let the last points travel: query delay, `for:`, group wait.
    drain = stack.timing.query_delay_seconds + 12
    say(f"replay done; waiting {drain:.0f}s for the last alerts to arrive")
    time.sleep(drain)

    alerts = _receiver_get(stack, "/api/v1/alerts")
    actions = _receiver_get(stack, "/api/v1/actions")
    firing = [a for a in alerts if a.get("status") == "firing"]
    latency_ms = (stack.timing.query_delay_seconds + 10) * 1000
    scores = score_tracks(tracks, anchors, firing, latency_ms)

    say("")
    say(f"{'series':<22}{'windows':>8}{'caught':>8}{'false alarms':>14}")
    for score in scores:
        say(
            f"{score.query:<22}{score.windows:>8}{score.caught:>8}{score.false_alarms:>14}"
        )
    host_alerts = [
        a for a in firing if a["labels"].get("alertname") == "AiopsHostCpuAnomaly"
    ]
    named = sorted({a["labels"].get("command", "?") for a in host_alerts})
    say(
        f"host CPU: {_pct(cpu['before_hog'])} before the hog, "
        f"{_pct(cpu['with_hog'])} with it, {_pct(cpu['after_cap'])} after the cap"
    )
    say(f"host CPU alerts: {len(host_alerts)}, naming process group(s): {named}")
    if capped_at is None:
        say(
            f"{HOG_COMMAND} was not capped: no host CPU alert named it in time "
            "(on a host already busy the hog may not stand out)"
        )
    for action in actions:
        say(action_line(action))

    return {
        "labelled_windows": sum(s.windows for s in scores),
        "caught_windows": sum(s.caught for s in scores),
        "false_alarms": sum(s.false_alarms for s in scores),
        "alerts_received": len(alerts),
        # Every action the receiver decided on: planned in dry-run, or applied.
        "actions_planned": sum(1 for a in actions if a.get("result") in DECIDED),
        "actions_applied": sum(1 for a in actions if a.get("result") == "applied"),
        "host_cpu_alert_names_hog": HOG_COMMAND in named,
        "host_cpu_before_hog_ratio": cpu["before_hog"],
        "host_cpu_with_hog_ratio": cpu["with_hog"],
        "host_cpu_after_cap_ratio": cpu["after_cap"],
        "replay_push_errors": pusher.errors,
    }


def _remove_empty_cgroups(name: str) -> None:
    """Remove the groups the demo's receiver made; rmdir fails on a used one."""
    for root in CGROUP_MOUNT.glob(f"*/{name}"):
        for group in sorted(root.iterdir()):
            if group.is_dir():
                _rmdir_quietly(group)
        _rmdir_quietly(root)


def _rmdir_quietly(path: Path) -> None:
    try:
        path.rmdir()
    except OSError as exc:
        log.warning("left cgroup %s in place: %s", path, exc)


def _hog_capped(stack: Stack) -> bool:
    try:
        actions = _receiver_get(stack, "/api/v1/actions")
    except requests.RequestException:
        return False
    return any(
        a.get("policy") == "demo-cap-hog" and a.get("result") == "applied"
        for a in actions
    )


def _receiver_get(stack: Stack, path: str) -> list[dict[str, Any]]:
    response = requests.get(
        stack.url("webhook") + path + "?limit=1000",
        headers={"Authorization": f"Bearer {stack.token}"},
        timeout=10,
    )
    response.raise_for_status()
    body = response.json()
    return body.get("data", body) if isinstance(body, dict) else body


def _host_cpu(stack: Stack) -> float | None:
    try:
        response = requests.get(
            stack.url("prometheus") + "/api/v1/query",
            params={"query": "avg(avg_over_time(aiops_host_cpu_usage_ratio[10s]))"},
            timeout=5,
        )
        result = response.json()["data"]["result"]
    except (requests.RequestException, KeyError, ValueError):
        return None
    return round(float(result[0]["value"][1]), 3) if result else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _print_urls(stack: Stack, say) -> None:
    for name in stack.ports:
        say(f"  {name:<13} {stack.url(name)}")


def _wait_forever() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _printer(out: TextIO):
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    return say
