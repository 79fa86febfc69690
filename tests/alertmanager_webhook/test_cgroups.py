"""cgroup v1 and v2 against tmp_path trees, and once against the host's v1."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from alertmanager_webhook.cgroups import (
    CgroupError,
    Cgroups,
    CgroupUnavailable,
    group_name,
)

from .conftest import fake_proc, fake_v1_tree


def _v2_tree(root: Path, enabled: str = "cpu memory") -> Path:
    root.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text(enabled + "\n")
    (root / "cgroup.procs").write_text("")
    (root / "user.slice").mkdir()
    (root / "user.slice" / "cgroup.procs").write_text("")
    return root


def _cgroups(tmp_path: Path, fs_root: Path) -> Cgroups:
    proc = fake_proc(
        tmp_path / "proc",
        {
            4211: "0::/user.slice\n",
            4212: "12:cpu,cpuacct:/batch\n4:memory:/batch\n0::/\n",
        },
    )
    # A real cgroupfs removes a group with its control files; a tmp dir needs rmtree.
    return Cgroups(fs_root, "aiops-webhook", proc, rmdir=shutil.rmtree)


def test_finds_v2_where_the_controller_is_enabled(tmp_path: Path) -> None:
    cgroups = _cgroups(tmp_path, _v2_tree(tmp_path / "cg"))

    hierarchy = cgroups.find("cpu")

    assert (hierarchy.version, hierarchy.mount) == (2, tmp_path / "cg")


def test_hybrid_host_without_cpu_in_v2_uses_v1(tmp_path: Path) -> None:
    root = fake_v1_tree(tmp_path / "cg")
    unified = root / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("hugetlb\n")
    (unified / "cgroup.subtree_control").write_text("")

    hierarchy = _cgroups(tmp_path, root).find("cpu")

    assert (hierarchy.version, hierarchy.mount) == (1, root / "cpu")


def test_no_hierarchy_is_unavailable(tmp_path: Path) -> None:
    cgroups = _cgroups(tmp_path, _v2_tree(tmp_path / "cg", enabled="pids"))

    assert cgroups.find("cpu") is None
    with pytest.raises(CgroupUnavailable, match="no cgroup hierarchy offers cpu"):
        cgroups.usable("cpu")


def test_v2_confine_and_release(tmp_path: Path) -> None:
    root = _v2_tree(tmp_path / "cg")
    cgroups = _cgroups(tmp_path, root)
    group = group_name("cpu", "command='x' user='y'")

    undo = cgroups.confine("cpu", group, [4211], {"cpu.max": "50000 100000"})

    managed = root / "aiops-webhook"
    assert (managed / "cgroup.subtree_control").read_text() == "+cpu"
    assert (managed / group / "cpu.max").read_text() == "50000 100000"
    assert (managed / group / "cgroup.procs").read_text() == "4211"
    assert undo["origins"] == {"4211": "/user.slice"}

    text = cgroups.release(undo)

    assert (root / "user.slice" / "cgroup.procs").read_text() == "4211"
    assert not (managed / group).exists()
    assert text == f"moved 1 process(es) back and removed aiops-webhook/{group}"


def _recorded(tmp_path: Path) -> tuple[Path, Path, Cgroups, str]:
    """A v2 tree, a /proc, Cgroups keeping records, and one target's group."""
    root = _v2_tree(tmp_path / "cg")
    proc = fake_proc(tmp_path / "proc", {4211: "0::/user.slice\n"})
    cgroups = Cgroups(
        root, "aiops-webhook", proc, shutil.rmtree, tmp_path / "webhook.db.cgroups"
    )
    return root, proc, cgroups, group_name("target", "command='x'")


@pytest.mark.parametrize("last", ["cpu", "memory"])
def test_two_limits_on_one_target_move_it_back_where_it_came_from(
    tmp_path: Path, last: str
) -> None:
    root, proc, cgroups, group = _recorded(tmp_path)

    cpu = cgroups.confine("cpu", group, [4211], {"cpu.max": "50000 100000"})
    # What /proc says once the first action moved the process.
    (proc / "4211" / "cgroup").write_text(f"0::/aiops-webhook/{group}\n")
    memory = cgroups.confine("memory", group, [4211], {"memory.high": "1000000"})
    (root / "aiops-webhook" / group / "cpu.max").write_text("50000 100000")
    (root / "aiops-webhook" / group / "memory.high").write_text("1000000")
    first, second = (memory, cpu) if last == "cpu" else (cpu, memory)

    kept = cgroups.release(first)
    moved = cgroups.release(second)

    assert memory["origins"] == {"4211": "/user.slice"}
    assert "the processes stay" in kept
    assert moved.startswith("moved 1 process(es) back")
    assert (root / "user.slice" / "cgroup.procs").read_text() == "4211"
    assert list((tmp_path / "webhook.db.cgroups").iterdir()) == []


def test_lifting_one_of_two_limits_of_a_kind_keeps_the_other(tmp_path: Path) -> None:
    root, proc, cgroups, group = _recorded(tmp_path)
    high = root / "aiops-webhook" / group / "memory.high"

    first = cgroups.confine("memory", group, [4211], {"memory.high": "2000000"})
    (proc / "4211" / "cgroup").write_text(f"0::/aiops-webhook/{group}\n")
    second = cgroups.confine("memory", group, [4211], {"memory.high": "1000000"})
    cgroups.release(second)
    kept = high.read_text()
    cgroups.release(first)

    assert kept == "2000000"  # the first alert's limit, still firing
    assert (root / "user.slice" / "cgroup.procs").read_text() == "4211"
    assert not high.parent.exists()


def test_the_strictest_of_two_limits_of_a_kind_holds(tmp_path: Path) -> None:
    root, proc, cgroups, group = _recorded(tmp_path)
    cpu_max = root / "aiops-webhook" / group / "cpu.max"

    tight = cgroups.confine("cpu", group, [4211], {"cpu.max": "25000 100000"})
    cgroups.confine("cpu", group, [4211], {"cpu.max": "50000 100000"})
    both = cpu_max.read_text()
    cgroups.release(tight)

    assert both == "25000 100000"
    assert cpu_max.read_text() == "50000 100000"


def test_v1_confine_writes_the_period_then_the_quota(tmp_path: Path) -> None:
    root = fake_v1_tree(tmp_path / "cg")
    (root / "cpu" / "batch").mkdir()
    cgroups = _cgroups(tmp_path, root)
    settings = {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "25000"}

    undo = cgroups.confine("cpu", "cpu-abc", [4212], settings)

    group = root / "cpu" / "aiops-webhook" / "cpu-abc"
    assert (group / "cpu.cfs_quota_us").read_text() == "25000"
    assert undo["origins"] == {"4212": "/batch"}
    cgroups.release(undo)
    assert (root / "cpu" / "batch" / "cgroup.procs").read_text() == "4212"


def test_release_of_a_removed_group_says_so(tmp_path: Path) -> None:
    cgroups = _cgroups(tmp_path, fake_v1_tree(tmp_path / "cg"))
    undo = cgroups.confine("cpu", "cpu-abc", [4211], {"cpu.cfs_quota_us": "1000"})
    shutil.rmtree(tmp_path / "cg" / "cpu" / "aiops-webhook" / "cpu-abc")

    assert cgroups.release(undo) == "aiops-webhook/cpu-abc was already removed"


@pytest.mark.parametrize("group", ["../escape", "/abs", "a/../../b"])
def test_paths_stay_under_the_managed_root(tmp_path: Path, group: str) -> None:
    cgroups = _cgroups(tmp_path, fake_v1_tree(tmp_path / "cg"))

    with pytest.raises(CgroupError, match="is outside"):
        cgroups.confine("cpu", group, [4211], {})
    with pytest.raises(CgroupError, match="is outside"):
        cgroups.release(
            {
                "cgroup": 1,
                "controller": "cpu",
                "group": group,
                "origins": {},
                "settings": [],
            }
        )


def test_origin_outside_the_hierarchy_falls_back_to_its_root(tmp_path: Path) -> None:
    root = fake_v1_tree(tmp_path / "cg")
    cgroups = _cgroups(tmp_path, root)
    undo = cgroups.confine("cpu", "cpu-abc", [4211], {})
    undo["origins"] = {"4211": "/../../etc"}

    cgroups.release(undo)

    assert (root / "cpu" / "cgroup.procs").read_text() == "4211"


def test_group_names_carry_no_label_text() -> None:
    name = group_name("cpu", "command='../../x' user='y'")

    assert name.startswith("cpu-")
    assert len(name) == 20
    assert "/" not in name


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    # Bounded: an orphaned child still goes away by itself.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _cgroup_of(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (controllers == "" and path):
            return path
    return ""


def test_real_hierarchy_confine_and_release(
    real_cgroups: Cgroups, sleeper: subprocess.Popen[bytes]
) -> None:
    hierarchy = real_cgroups.find("cpu")
    before = _cgroup_of(sleeper.pid, "cpu")
    settings = (
        {"cpu.max": "20000 100000"}
        if hierarchy.version == 2
        else {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "20000"}
    )

    undo = real_cgroups.confine("cpu", "cpu-real", [sleeper.pid], settings)

    group = hierarchy.mount / real_cgroups.managed / "cpu-real"
    assert _cgroup_of(sleeper.pid, "cpu") == f"/{real_cgroups.managed}/cpu-real"
    assert (group / "cgroup.procs").read_text().split() == [str(sleeper.pid)]
    quota = "cpu.max" if hierarchy.version == 2 else "cpu.cfs_quota_us"
    assert (group / quota).read_text().split()[0] == "20000"

    real_cgroups.release(undo)

    assert _cgroup_of(sleeper.pid, "cpu") == before
    assert not group.exists()
