"""cpu_cap, memory_high, renice and signal: plans on a fake process list, apply
and restore on a real child this test starts, cgroups as a tmp_path tree."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from alertmanager_webhook.actuators.base import ActuatorError
from alertmanager_webhook.actuators.caps import CpuCap, MemoryHigh
from alertmanager_webhook.actuators.priority import Renice, Signal
from alertmanager_webhook.cgroups import Cgroups
from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.processes import ProcessFinder, ProcessInfo, iter_processes

from .conftest import FAKE_PROCESSES, fake_v1_tree

LABELS = {"command": "aiops-testcap", "user": "root"}
CHILD_COMM = "aiops-testsleep"
# PR_SET_NAME is 15; bounded so that an orphaned child still goes away.
CHILD = f"""
import ctypes, time
ctypes.CDLL(None).prctl(15, b"{CHILD_COMM}", 0, 0, 0)
print("named", flush=True)
time.sleep(60)
"""


def _policy(action: str, **params) -> PolicyConfig:
    return PolicyConfig(name="p", match={"a": "b"}, action=action, params=params)


def _fake_finder() -> ProcessFinder:
    return ProcessFinder(lambda: iter(FAKE_PROCESSES), own_pids=())


def _v2_root(tmp_path: Path) -> Path:
    root = tmp_path / "v2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "cgroup.subtree_control").write_text("cpu memory\n")
    return root


def test_cpu_cap_plan_names_v2_cpu_max(tmp_path: Path) -> None:
    cap = CpuCap(_fake_finder(), Cgroups(_v2_root(tmp_path)))

    plan = cap.plan(LABELS, _policy("cpu_cap", cpu_cores=0.5), {"cpu_cores": 0.5})

    assert plan.result == "planned"
    assert plan.target == "command='aiops-testcap' user='root'"
    assert plan.text.startswith(
        "cap 2 processes command='aiops-testcap' user='root' (pids 4211, 4212) "
        "to 0.5 CPU cores with cgroup v2 cpu.max=50000 100000 in aiops-webhook/target-"
    )
    assert plan.spec["processes"] == [[4211, 1000.0], [4212, 1001.0]]


def test_cpu_cap_plan_falls_back_to_renice(tmp_path: Path) -> None:
    cap = CpuCap(_fake_finder(), Cgroups(tmp_path / "none"))

    plan = cap.plan(LABELS, _policy("cpu_cap", cpu_cores=2.0), {"cpu_cores": 2.0})

    assert plan.text.endswith(
        "to 2 CPU cores with nice 10, because no cgroup hierarchy offers cpu"
    )


def test_cpu_cap_quota_has_the_kernel_minimum(tmp_path: Path) -> None:
    cap = CpuCap(_fake_finder(), Cgroups(_v2_root(tmp_path)))

    plan = cap.plan(LABELS, _policy("cpu_cap", cpu_cores=0.001), {"cpu_cores": 0.001})

    assert "cpu.max=1000 100000" in plan.text


def test_memory_high_plans_v1_soft_limit_and_fails_without_memory(
    tmp_path: Path,
) -> None:
    policy = _policy("memory_high", memory_bytes=float(2**30))
    v1 = MemoryHigh(_fake_finder(), Cgroups(fake_v1_tree(tmp_path / "cg")))
    none = MemoryHigh(_fake_finder(), Cgroups(tmp_path / "none"))

    planned = v1.plan(LABELS, policy, policy.params)
    failed = none.plan(LABELS, policy, policy.params)

    assert "memory.soft_limit_in_bytes=1073741824" in planned.text
    assert (failed.result, failed.text) == (
        "failed",
        "cannot cap memory: no cgroup hierarchy offers memory",
    )


def test_plan_refuses_protected_targets() -> None:
    finder = ProcessFinder(lambda: iter([ProcessInfo(1, "init", "root")]), own_pids=())

    plan = Renice(finder).plan({"command": "init", "user": "root"}, None, {"nice": 5})

    assert (plan.result, plan.text) == ("refused", "refused: pid 1 is init")


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE)
    try:
        # The child says when it has named itself: a read, not a polling loop.
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"named\n"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def _child_labels() -> dict[str, str]:
    return {"command": CHILD_COMM, "user": psutil.Process().username()}


def _real_finder() -> ProcessFinder:
    return ProcessFinder(iter_processes, ("sshd",))


def test_cpu_cap_apply_and_restore_on_a_tree(
    tmp_path: Path, child: subprocess.Popen[bytes]
) -> None:
    root = fake_v1_tree(tmp_path / "cg")
    cap = CpuCap(_real_finder(), Cgroups(root, rmdir=shutil.rmtree))
    plan = cap.plan(_child_labels(), None, {"cpu_cores": 0.25})

    outcome = cap.apply(plan.spec)

    group = root / "cpu" / "aiops-webhook" / plan.spec["group"]
    assert (group / "cgroup.procs").read_text() == str(child.pid)
    assert (group / "cpu.cfs_quota_us").read_text() == "25000"
    assert outcome.text.startswith(f"moved pids [{child.pid}] into cgroup v1")
    assert cap.restore(outcome.undo).startswith("moved 1 process(es) back")
    assert not group.exists()


def test_memory_high_apply_and_restore_on_a_v2_tree(
    tmp_path: Path, child: subprocess.Popen[bytes]
) -> None:
    root = _v2_root(tmp_path)
    high = MemoryHigh(_real_finder(), Cgroups(root, rmdir=shutil.rmtree))
    plan = high.plan(_child_labels(), None, {"memory_bytes": float(2**28)})

    outcome = high.apply(plan.spec)

    group = root / "aiops-webhook" / plan.spec["group"]
    assert (group / "memory.high").read_text() == str(2**28)
    assert (root / "aiops-webhook" / "cgroup.subtree_control").read_text() == "+memory"
    high.restore(outcome.undo)
    assert not group.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="lowering nice back needs root")
def test_cpu_cap_without_cgroups_renices_and_restores(
    tmp_path: Path, child: subprocess.Popen[bytes]
) -> None:
    cap = CpuCap(_real_finder(), Cgroups(tmp_path / "none"))
    plan = cap.plan(_child_labels(), None, {"cpu_cores": 0.25, "fallback_nice": 15.0})
    before = psutil.Process(child.pid).nice()

    outcome = cap.apply(plan.spec)

    assert psutil.Process(child.pid).nice() == 15
    assert outcome.text == "reniced to 15 (no cgroup hierarchy offers cpu)"
    cap.restore(outcome.undo)
    assert psutil.Process(child.pid).nice() == before


def test_cpu_cap_fallback_never_gives_a_nicer_process_more_cpu(
    tmp_path: Path, child: subprocess.Popen[bytes]
) -> None:
    # A batch job its owner already runs at the lowest priority.
    psutil.Process(child.pid).nice(19)
    cap = CpuCap(_real_finder(), Cgroups(tmp_path / "none"))
    plan = cap.plan(_child_labels(), None, {"cpu_cores": 0.25, "fallback_nice": 10.0})

    outcome = cap.apply(plan.spec)

    assert psutil.Process(child.pid).nice() == 19
    cap.restore(outcome.undo)
    assert psutil.Process(child.pid).nice() == 19


@pytest.mark.skipif(os.geteuid() != 0, reason="lowering nice back needs root")
def test_renice_and_ionice_then_restore(child: subprocess.Popen[bytes]) -> None:
    renice = Renice(_real_finder())
    params = {"nice": 12.0, "ionice_class": "idle"}
    plan = renice.plan(_child_labels(), None, params)
    proc = psutil.Process(child.pid)
    before = (proc.nice(), proc.ionice())

    outcome = renice.apply(plan.spec)

    assert plan.text.endswith("to nice 12 and ionice class idle")
    assert (proc.nice(), proc.ionice().ioclass) == (12, psutil.IOPRIO_CLASS_IDLE)
    assert renice.restore(outcome.undo) == "restored nice and ionice of 1 process(es)"
    assert (proc.nice(), proc.ionice()) == before


def test_apply_to_a_process_that_ended_fails(child: subprocess.Popen[bytes]) -> None:
    renice = Renice(_real_finder())
    plan = renice.plan(_child_labels(), None, {"nice": 5.0})
    child.kill()
    child.wait(timeout=10)

    with pytest.raises(ActuatorError, match="every target process has ended"):
        renice.apply(plan.spec)


def test_pid_reused_by_another_process_is_left_alone(
    child: subprocess.Popen[bytes],
) -> None:
    renice = Renice(_real_finder())
    plan = renice.plan(_child_labels(), None, {"nice": 5.0})
    spec = dict(plan.spec, processes=[[child.pid, 12345.0]])

    with pytest.raises(ActuatorError, match="every target process has ended"):
        renice.apply(spec)
    assert psutil.Process(child.pid).nice() != 5


def test_signal_sends_only_the_named_signal(child: subprocess.Popen[bytes]) -> None:
    sender = Signal(_real_finder())
    plan = sender.plan(_child_labels(), None, {"signal": "SIGTERM"})

    outcome = sender.apply(plan.spec)

    assert child.wait(timeout=10) == -signal.SIGTERM
    assert outcome.text == f"sent SIGTERM to pid {child.pid}"
    assert outcome.undo is None


@pytest.mark.parametrize("first", ["cpu", "memory"])
def test_cpu_cap_and_memory_high_share_one_v2_group(
    tmp_path: Path, child: subprocess.Popen[bytes], first: str
) -> None:
    root = _v2_root(tmp_path)
    cgroups = Cgroups(root, rmdir=shutil.rmtree)
    cap, high = CpuCap(_real_finder(), cgroups), MemoryHigh(_real_finder(), cgroups)
    cap_plan = cap.plan(_child_labels(), None, {"cpu_cores": 0.25})
    high_plan = high.plan(_child_labels(), None, {"memory_bytes": float(2**28)})

    undo = {
        "cpu": cap.apply(cap_plan.spec).undo,
        "memory": high.apply(high_plan.spec).undo,
    }

    # One group holds the process and both limits, whichever was set last.
    assert cap_plan.spec["group"] == high_plan.spec["group"]
    group = root / "aiops-webhook" / cap_plan.spec["group"]
    assert (group / "cgroup.procs").read_text() == str(child.pid)
    assert (group / "cpu.max").read_text() == "25000 100000"
    assert (group / "memory.high").read_text() == str(2**28)

    second = "memory" if first == "cpu" else "cpu"
    actuators = {"cpu": cap, "memory": high}
    kept = actuators[first].restore(undo[first])
    left = {"cpu": "memory.high", "memory": "cpu.max"}[first]
    assert kept.endswith(f"the processes stay for {left}")
    assert (group / "cgroup.procs").read_text() == str(child.pid)
    assert (group / left).read_text() != "max"

    done = actuators[second].restore(undo[second])
    assert done.startswith("moved 1 process(es) back")
    assert not group.exists()
