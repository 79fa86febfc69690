"""A cpu_cap plan against a real process this test starts and names itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from prometheus_client import CollectorRegistry

from alertmanager_webhook.actions import iter_processes
from alertmanager_webhook.app import create_app
from alertmanager_webhook.store import Store

from .conftest import AUTH, TOKEN, make_config

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="prctl(PR_SET_NAME) is Linux only"
)

COMM = "aiops-testcap"

# PR_SET_NAME is 15; the loop is bounded so an orphaned child still goes away.
CHILD = f"""
import ctypes, time
ctypes.CDLL(None).prctl(15, b"{COMM}", 0, 0, 0)
for _ in range(600):
    time.sleep(0.1)
"""


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD])
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(proc.pid).name() != COMM:
            assert proc.poll() is None, "child exited before naming itself"
            assert time.monotonic() < deadline, "child never set its comm"
            time.sleep(0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_iter_processes_sees_this_process() -> None:
    me = next(p for p in iter_processes() if p.pid == os.getpid())

    assert me.username == psutil.Process().username()


def _post_for(
    child_user: str, store: Store, firing: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    firing["alerts"] = firing["alerts"][:1]
    firing["alerts"][0]["labels"]["user"] = child_user
    # The real process iterator: nothing injected between the plan and psutil.
    app = create_app(make_config(), store, token=TOKEN, registry=CollectorRegistry())

    response = app.test_client().post("/webhook", data=json.dumps(firing), headers=AUTH)

    return response.get_json(), store.recent_actions(10)


def test_cpu_cap_plan_names_the_real_pid(
    child: subprocess.Popen[bytes], store: Store, firing: dict[str, Any]
) -> None:
    user = psutil.Process(child.pid).username()

    answer, actions = _post_for(user, store, firing)

    assert answer == {"status": "accepted", "alerts": 1, "actions": 1}
    [action] = actions
    assert action["policy"] == "cap-testcap"
    assert action["result"] == "planned"
    assert action["mode"] == "dry-run"
    assert action["target"] == f"command={COMM!r} user={user!r}"
    assert action["plan"].startswith("cap ")
    assert str(child.pid) in action["plan"].split("(pids ")[1]
    assert action["plan"].endswith(
        "to 0.5 CPU cores with cgroup v2 cpu.max '50000 100000'"
    )
    # Dry-run: the child is still running and unconstrained.
    assert child.poll() is None


def test_cpu_cap_for_another_user_is_skipped(
    child: subprocess.Popen[bytes], store: Store, firing: dict[str, Any]
) -> None:
    answer, actions = _post_for("no-such-user-aiops", store, firing)

    assert answer["actions"] == 1
    [action] = actions
    assert action["result"] == "skipped"
    assert action["plan"] == (
        f"no running process matches command={COMM!r} user='no-such-user-aiops'"
    )
