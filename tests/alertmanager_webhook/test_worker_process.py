"""The worker's own process: it acts, reports, dies with the server, restarts."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from alertmanager_webhook import worker_process
from alertmanager_webhook.forwarded_metrics import ForwardedMetrics, apply_updates
from alertmanager_webhook.intake import Intent, dedupe_key
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.payload import parse_notification
from alertmanager_webhook.store import Store
from alertmanager_webhook.store_errors import StoreError
from alertmanager_webhook.worker_moves import MoveClient, serve_moves
from alertmanager_webhook.worker_process import (
    CONTEXT,
    WorkerStartError,
    take_worker_lock,
)

from .conftest import AUTH, receiver_command, wait_healthy

STARTED = re.compile(r"msg=worker started pid=(\d+)")
# Writes what a command finds SIGTERM set to when it starts.
HEARS_SIGTERM = (
    "import signal, sys; "
    'open(sys.argv[1], "w").write(str(signal.getsignal(signal.SIGTERM)))'
)


def _command_policy(*argv: str) -> str:
    """The policies section: apply one command to every AiopsProcessCpuHog."""
    return (
        "  - name: run\n"
        "    match: {alertname: AiopsProcessCpuHog}\n"
        "    action: command\n"
        f"    argv: [{', '.join(argv)}]\n"
        "    cooldown_seconds: 0\n"
        "mode: apply\n"
    )


def _mark_policy(marks: Path) -> str:
    mktemp = shutil.which("mktemp")
    assert mktemp is not None
    return _command_policy(mktemp, f"'{marks}/{{alertname}}.XXXXXX'")


def _wait_for(check, what: str, seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)
    return found


def _worker_pids(log_path: Path) -> list[int]:
    return [int(pid) for pid in STARTED.findall(log_path.read_text())]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # exited, waiting for a parent to reap it


def _firing(firing: dict[str, Any], starts_at: str) -> dict[str, Any]:
    # A new episode per send: the receiver acts once per alert episode.
    for alert in firing["alerts"]:
        alert["startsAt"] = starts_at
    return firing


@pytest.fixture
def session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy between us and 127.0.0.1
    return session


@pytest.fixture
def marking_server(start_server, session, tmp_path: Path):
    """A receiver whose policy makes one file in `marks` per action it applies."""
    marks = tmp_path / "marks"
    marks.mkdir()
    base, proc, log_path = start_server(policies=_mark_policy(marks))
    wait_healthy(session, base, proc)
    return base, proc, log_path, marks


def test_the_worker_acts_and_its_metrics_reach_the_server(
    marking_server, session, firing: dict[str, Any]
) -> None:
    base, proc, log_path, marks = marking_server

    session.post(f"{base}/webhook", json=firing, headers=AUTH, timeout=5)

    _wait_for(lambda: len(list(marks.iterdir())) == 2, "a file per alert")
    applied = (
        'aiops_webhook_actions_total{action="command",mode="apply",'
        'result="applied"} 2.0'
    )

    def page_with_it() -> str | None:
        page = session.get(f"{base}/metrics", timeout=5).text
        return page if applied in page else None

    page = _wait_for(page_with_it, "the applied action in /metrics")
    assert 'aiops_webhook_apply_duration_seconds_count{action="command"} 2.0' in page
    assert _worker_pids(log_path)[0] != proc.pid


def test_the_worker_dies_with_the_server(start_server, session, tmp_path: Path) -> None:
    base, proc, log_path = start_server()
    wait_healthy(session, base, proc)
    (worker,) = _worker_pids(log_path)
    assert not _gone(worker)

    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    _wait_for(lambda: _gone(worker), "the worker end with its server", 10)


def test_a_worker_that_died_is_started_again(
    marking_server, session, firing: dict[str, Any]
) -> None:
    base, proc, log_path, marks = marking_server
    (first,) = _worker_pids(log_path)

    # What the kernel's OOM killer would do to the worker alone.
    os.kill(first, signal.SIGKILL)
    _wait_for(lambda: len(_worker_pids(log_path)) == 2, "a second worker")
    pids = _worker_pids(log_path)
    session.post(
        f"{base}/webhook",
        json=_firing(firing, "2024-05-14T10:00:00Z"),
        headers=AUTH,
        timeout=5,
    )

    assert pids[1] != first
    assert "worker process exited code=-9" in log_path.read_text()
    _wait_for(lambda: list(marks.iterdir()), "an action by the new worker")
    assert proc.poll() is None
    metrics = session.get(f"{base}/metrics", timeout=5).text
    assert 'aiops_webhook_worker_errors_total{stage="process"} 1.0' in metrics


def test_a_stop_while_the_worker_is_started_again_ends_both(
    start_server, session
) -> None:
    base, proc, log_path = start_server()
    wait_healthy(session, base, proc)
    (first,) = _worker_pids(log_path)

    os.kill(first, signal.SIGKILL)
    _wait_for(lambda: "worker process exited" in log_path.read_text(), "the death")
    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=20) == 0
    assert all(_gone(pid) for pid in _worker_pids(log_path))


def test_commands_the_worker_runs_hear_sigterm(
    start_server, session, tmp_path: Path, firing: dict[str, Any]
) -> None:
    heard = tmp_path / "heard"
    policy = _command_policy(sys.executable, "-c", f"'{HEARS_SIGTERM}'", f"'{heard}'")
    base, proc, _ = start_server(policies=policy)
    wait_healthy(session, base, proc)

    session.post(f"{base}/webhook", json=firing, headers=AUTH, timeout=5)

    assert _wait_for(lambda: heard.exists() and heard.read_text(), "the command")
    assert heard.read_text() == str(int(signal.SIG_DFL))


def test_the_worker_and_its_commands_yield_the_cpu_to_the_server(
    start_server, session, tmp_path: Path, firing: dict[str, Any]
) -> None:
    found = tmp_path / "scheduling"
    # What a command finds: its scheduling policy and niceness. Braces are
    # doubled in argv, where single ones hold labels.
    report = (
        "import os, sys; open(sys.argv[1], 'w')"
        ".write(f'{{os.sched_getscheduler(0)}} {{os.nice(0)}}')"
    )
    policy = _command_policy(sys.executable, "-c", f'"{report}"', f"'{found}'")
    base, proc, _ = start_server(policies=policy)
    wait_healthy(session, base, proc)

    session.post(f"{base}/webhook", json=firing, headers=AUTH, timeout=5)

    assert _wait_for(lambda: found.exists() and found.read_text(), "the command")
    scheduler, niceness = map(int, found.read_text().split())
    assert scheduler == os.SCHED_IDLE
    assert niceness >= worker_process.NICENESS


def test_one_database_has_one_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_process, "LOCK_WAIT_SECONDS", 0.1)
    database = tmp_path / "webhook.db"
    held = take_worker_lock(str(database))
    (tmp_path / "symlink.db").symlink_to(database)

    for name in ("webhook.db", "symlink.db"):
        with pytest.raises(WorkerStartError, match=r"webhook\.db\.worker-lock"):
            take_worker_lock(str(tmp_path / name))

    os.close(held)
    os.close(take_worker_lock(str(database)))


def test_a_second_receiver_on_a_link_is_refused_before_it_writes(
    start_server, session, tmp_path: Path
) -> None:
    base, proc, _ = start_server()
    wait_healthy(session, base, proc)
    second = tmp_path / "second"
    second.mkdir()
    (second / "hard.db").hardlink_to(tmp_path / "webhook.db")
    config = second / "webhook.yml"
    config.write_text(
        (tmp_path / "webhook.yml")
        .read_text()
        .replace(str(tmp_path / "webhook.db"), str(second / "hard.db"))
    )

    done = subprocess.run(
        receiver_command(config, "127.0.0.1:0"), capture_output=True, text=True
    )

    assert done.returncode == 2
    assert "another receiver has database" in done.stderr
    # SQLite would have given the link a WAL of its own: nothing may be written.
    assert sorted(p.name for p in second.iterdir()) == ["hard.db", "webhook.yml"]


def test_moves_are_written_by_the_server_and_checked(
    store: Store, firing: dict[str, Any]
) -> None:
    notification = parse_notification(firing)
    intents = [Intent(a, "p", "cpu_cap", "apply") for a in notification.firing]
    saved = store.save(notification, dedupe_key(notification), intents)
    assert saved is not None
    action_id = saved.actions[0][0]
    server_end, worker_end = CONTEXT.Pipe(duplex=True)
    jobs = Jobs(store)
    server = threading.Thread(target=serve_moves, args=(server_end, jobs))
    server.start()
    move = MoveClient(worker_end)

    moved = move(action_id, ("queued",), {"result": "running", "attempts": 1})
    again = move(action_id, ("queued",), {"result": "running"})
    with pytest.raises(StoreError, match=r"may not set \['labels'\]"):
        move(action_id, ("running",), {"labels": "{}"})
    worker_end.close()
    server.join(5)

    assert (moved, again) == (True, False)
    assert Jobs(store).get(action_id)["result"] == "running"
    assert not server.is_alive()


def test_forwarded_metrics_land_on_the_servers_registry() -> None:
    forwarded = ForwardedMetrics()
    forwarded.actions.labels("cpu_cap", "apply", "applied").inc()
    forwarded.queue_depth.labels("queued").set(3)
    forwarded.apply_duration.labels("cpu_cap").observe(0.2)
    forwarded.worker_last_success.set(1700000000)
    forwarded.dry_run_held_back.labels("cpu_cap", "blast_radius").inc()
    registry = CollectorRegistry()

    apply_updates(WebhookMetrics(registry), forwarded.take())

    value = registry.get_sample_value
    assert (
        value(
            "aiops_webhook_actions_total",
            {"action": "cpu_cap", "mode": "apply", "result": "applied"},
        )
        == 1.0
    )
    assert value("aiops_webhook_queue_depth", {"state": "queued"}) == 3.0
    assert value("aiops_webhook_apply_duration_seconds_sum", {"action": "cpu_cap"})
    assert value("aiops_webhook_worker_last_success_timestamp_seconds") == 1.7e9
    assert (
        value(
            "aiops_webhook_dry_run_held_back_total",
            {"action": "cpu_cap", "limit": "blast_radius"},
        )
        == 1.0
    )
    assert forwarded.take() == []
    with pytest.raises(AttributeError):
        forwarded.notifications  # noqa: B018 (the server's own, never forwarded)


def test_while_no_worker_runs_the_queue_depth_still_shows(
    start_server, session, tmp_path: Path, firing: dict[str, Any]
) -> None:
    base, proc, log_path = start_server(policies=_mark_policy(tmp_path))
    wait_healthy(session, base, proc)
    (worker,) = _worker_pids(log_path)

    os.kill(worker, signal.SIGKILL)
    # Taken before the next worker starts: another receiver's, as it can tell.
    held = take_worker_lock(str(tmp_path / "webhook.db"))
    try:
        session.post(f"{base}/webhook", json=firing, headers=AUTH, timeout=5)

        def queued() -> bool:
            page = session.get(f"{base}/metrics", timeout=5).text
            return 'aiops_webhook_queue_depth{state="queued"} 2.0' in page

        _wait_for(queued, "the two queued actions in /metrics", 15)
    finally:
        os.close(held)
