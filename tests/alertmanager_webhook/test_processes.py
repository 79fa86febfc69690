"""Finding an alert's processes, and the ones no action may touch."""

from __future__ import annotations

import os
import subprocess

import psutil
import pytest

from alertmanager_webhook.processes import (
    ProcessFinder,
    ProcessInfo,
    TargetError,
    iter_processes,
    own_lineage,
)

from .conftest import FAKE_PROCESSES

LABELS = {"command": "aiops-testcap", "user": "root"}


def _finder(*procs: ProcessInfo, own=(), protected=("sshd",)) -> ProcessFinder:
    listed = procs or FAKE_PROCESSES
    return ProcessFinder(lambda: iter(listed), protected, own_pids=own)


def test_finds_the_command_of_the_user() -> None:
    targets = _finder().find(LABELS)

    assert targets.pids == [4211, 4212]
    assert targets.shown() == (
        "2 processes command='aiops-testcap' user='root' (pids 4211, 4212)"
    )


@pytest.mark.parametrize(
    ("labels", "reason", "result"),
    [
        ({"command": "aiops-testcap"}, "alert has no user label", "skipped"),
        (
            {"command": "aiops-testcap", "user": ""},
            "alert has no user label",
            "skipped",
        ),
        ({"user": "root"}, "alert has no command label", "skipped"),
        (
            {"command": "aiops-testcap", "user": "svc"},
            "no running process matches command='aiops-testcap' user='svc'",
            "skipped",
        ),
    ],
)
def test_missing_labels_or_processes(labels, reason: str, result: str) -> None:
    with pytest.raises(TargetError) as caught:
        _finder().find(labels)

    assert str(caught.value).startswith(reason)
    assert caught.value.result == result


def test_unreadable_process_list_fails() -> None:
    def denied():
        raise psutil.AccessDenied(pid=1)
        yield  # pragma: no cover

    with pytest.raises(TargetError, match="^cannot list processes") as caught:
        ProcessFinder(denied, own_pids=()).find(LABELS)

    assert caught.value.result == "failed"


@pytest.mark.parametrize(
    ("proc", "why"),
    [
        (ProcessInfo(1, "x", "root"), "is init"),
        (ProcessInfo(2, "kthreadd", "root", 0), "is a kernel thread"),
        (ProcessInfo(77, "kworker/0:1", "root", 2), "is a kernel thread"),
        (
            ProcessInfo(500, "x", "root"),
            "is this receiver, one of its parents or helpers",
        ),
        (ProcessInfo(60, "sshd", "root"), "runs 'sshd', which is protected"),
        (
            ProcessInfo(61, "python3", "root", 1, ("python3", "-m", "exporter")),
            "is one of the bundle's own services",
        ),
        (
            ProcessInfo(62, "aiops-webhook", "root", 1, ("/v/bin/aiops-webhook",)),
            "is one of the bundle's own services",
        ),
    ],
)
def test_protected_processes_are_refused(proc: ProcessInfo, why: str) -> None:
    finder = _finder(proc, own=(500,))

    assert finder.refusal(proc) == why
    with pytest.raises(TargetError, match="^refused: ") as caught:
        finder.find({"command": proc.name, "user": "root"})
    assert caught.value.result == "refused"


def test_protected_ones_are_left_out_of_a_wider_match() -> None:
    procs = (
        ProcessInfo(70, "python3", "root", 1, ("python3", "-m", "detector")),
        ProcessInfo(71, "python3", "root", 1, ("python3", "train.py")),
    )

    targets = _finder(*procs).find({"command": "python3", "user": "root"})

    assert targets.pids == [71]


def test_the_real_process_list_sees_this_process() -> None:
    me = next(p for p in iter_processes() if p.pid == os.getpid())

    assert me.username == psutil.Process().username()
    assert me.create_time == pytest.approx(psutil.Process().create_time())
    assert {os.getpid(), os.getppid()} <= own_lineage()


def test_the_servers_helper_processes_count_as_its_own() -> None:
    # As the worker sees the receiver's multiprocessing resource tracker: a
    # `python3` child of the server that a policy on python3 must not touch.
    helper = subprocess.Popen(["sleep", "30"])
    try:
        own = own_lineage(server_pid=os.getpid())
    finally:
        helper.kill()
        helper.wait()

    assert helper.pid in own
    assert os.getpid() in own
    assert helper.pid not in own_lineage()
