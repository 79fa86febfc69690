"""The original case for real: a CPU hog this test starts is capped through the
host's cgroups by an AiopsHostCpuAnomaly alert in apply mode, and set free
again when the alert resolves. Needs root and a writable cpu hierarchy."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from alertmanager_webhook.actuators.registry import Edges, build_actuators
from alertmanager_webhook.cgroups import Cgroups
from alertmanager_webhook.processes import ProcessFinder, iter_processes

from .conftest import make_config

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="cgroups and prctl are Linux only"
)

COMM = "aiops-testburn"
CAP_CORES = 0.2
# Long enough for CFS to enforce ten 100 ms periods, short for the suite.
WINDOW_SECONDS = 1.0

# PR_SET_NAME is 15. The loop is bounded, so an orphaned child still ends.
BURNER = f"""
import ctypes, time
ctypes.CDLL(None).prctl(15, b"{COMM}", 0, 0, 0)
print("named", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    pass
"""


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", BURNER], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"named\n"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def _process_ticks(pid: int) -> int:
    # Fields 14 and 15 of /proc/<pid>/stat, counted after the parenthesised comm.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _host_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _usage(pid: int) -> tuple[float, float]:
    """CPU cores the process used, and the host's busy ratio, over one window."""
    hertz = os.sysconf("SC_CLK_TCK")
    ticks, (busy, total), started = _process_ticks(pid), _host_ticks(), time.monotonic()
    time.sleep(WINDOW_SECONDS)
    elapsed = time.monotonic() - started
    ticks_after, (busy_after, total_after) = _process_ticks(pid), _host_ticks()
    cores = (ticks_after - ticks) / hertz / elapsed
    return cores, (busy_after - busy) / max(1, total_after - total)


def _throttled(group: Path) -> int:
    for line in (group / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "nr_throttled":
            return int(value)
    return 0


def _cpu_cgroup(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    # A v2-only host: the single unified line.
    return Path(f"/proc/{pid}/cgroup").read_text().split("::", 1)[1].strip()


def _alert(status: str, user: str) -> dict[str, Any]:
    labels = {
        "alertname": "AiopsHostCpuAnomaly",
        "instance": "127.0.0.1:9835",
        "query": "host_cpu",
        "severity": "warning",
        "command": COMM,
        "user": user,
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="AiopsHostCpuAnomaly"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "aiops-webhook",
        "groupLabels": {"alertname": "AiopsHostCpuAnomaly"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": "Host CPU is above its expected band."},
                "startsAt": "2024-05-14T09:31:12.457Z",
                "endsAt": "0001-01-01T00:00:00Z"
                if status == "firing"
                else "2024-05-14T09:41:12.457Z",
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": "5c1d0b0e2f6a7d31",
            }
        ],
    }


def test_cpu_hog_is_capped_through_a_cgroup_and_restored(
    burner: subprocess.Popen[bytes],
    real_cgroups: Cgroups,
    make_receiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = make_config(
        mode="apply",
        cgroup_name=real_cgroups.managed,
        policies=[
            {
                "name": "cap-cpu-hog",
                "match": {"alertname": "AiopsHostCpuAnomaly"},
                "action": "cpu_cap",
                "params": {"cpu_cores": CAP_CORES},
            }
        ],
    )
    edges = Edges(
        finder=ProcessFinder(iter_processes, config.protected_commands),
        cgroups=real_cgroups,
    )
    receiver = make_receiver(config, actuators=build_actuators(config, edges))
    user = psutil.Process(burner.pid).username()
    origin = _cpu_cgroup(burner.pid)
    before, host_before = _usage(burner.pid)

    assert receiver.post(_alert("firing", user)).status_code == 200
    receiver.worker.drain()
    [action] = receiver.actions()
    capped, host_capped = _usage(burner.pid)
    group = _cpu_cgroup(burner.pid)

    assert action["result"] == "applied", action["reason"]
    assert group == f"/{real_cgroups.managed}/{action['spec']['group']}"
    hierarchy = real_cgroups.find("cpu")
    quota_file = "cpu.max" if hierarchy.version == 2 else "cpu.cfs_quota_us"
    quota = (hierarchy.mount / group.lstrip("/") / quota_file).read_text().split()[0]
    assert quota == str(round(CAP_CORES * 100_000))
    # The cap is an upper bound whatever else runs; the kernel counts the
    # periods in which it held the hog back.
    assert capped <= CAP_CORES + 0.08
    assert _throttled(hierarchy.mount / group.lstrip("/")) > 0

    assert receiver.post(_alert("resolved", user)).status_code == 200
    receiver.worker.drain()
    freed, host_freed = _usage(burner.pid)

    assert [a["result"] for a in receiver.actions()] == ["applied", "applied"]
    assert _cpu_cgroup(burner.pid) == origin
    assert not (hierarchy.mount / group.lstrip("/")).exists()
    # On a host busy with other work the hog may not get much more than the cap
    # anyway; the fall and the rise are asserted where it had room to show them.
    if before > CAP_CORES + 0.4:
        assert before - capped > 0.3
        assert freed > CAP_CORES + 0.2
    assert receiver.store.verify().ok
    with capsys.disabled():
        print(
            f"\n[cpu_cap] {COMM} pid {burner.pid}: {before:.2f} cores before, "
            f"{capped:.2f} capped at {CAP_CORES} (v{hierarchy.version} {quota_file} "
            f"{quota}), {freed:.2f} after the resolved alert; host CPU "
            f"{host_before:.0%} -> {host_capped:.0%} -> {host_freed:.0%}"
        )
