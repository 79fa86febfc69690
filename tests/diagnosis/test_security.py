"""Security findings from plain records."""

from __future__ import annotations

from detector.diagnosis import security as s


def proc(user: str, command: str = "python3", **kw) -> s.GpuProcess:
    return s.GpuProcess("gpu-1:9842", "0", command, user, kw.pop("container", ""), **kw)


def test_unowned_needs_both_user_and_container_outside_the_lists():
    found = s.unowned(
        [proc("alice"), proc("mallory"), proc("bob", container="c1")],
        allowed_users=["alice"],
        allowed_containers=["c1"],
    )

    assert [f.labels["user"] for f in found] == ["mallory"]
    assert s.unowned([proc("mallory")], [], []) == []


def test_mining_by_name_or_by_pattern_but_not_real_training():
    found = s.mining(
        [
            proc("eve", "xmrig"),
            proc("eve", "a.out", min_sm_ratio=0.99, max_memory_bytes=200e6),
            proc("alice", "python3", min_sm_ratio=0.99, max_memory_bytes=40e9),
            proc("bob", "python3"),
        ],
        ["xmrig"],
        min_sm_ratio=0.9,
        max_memory_bytes=2**30,
    )

    assert [(f.labels["command"], f.labels["reason"]) for f in found] == [
        ("xmrig", "name"),
        ("a.out", "pattern"),
    ]


def test_new_user_only_on_a_host_with_history():
    now = {("h1", "alice"): 2.0, ("h1", "mallory"): 4.0, ("h2", "carol"): 1.0}
    before = {("h1", "alice"): 2.0}

    found = s.new_users(now, before)

    assert [(f.labels["user"], f.value) for f in found] == [("mallory", 4.0)]


def test_auth_bursts_keep_the_count():
    found = s.auth_bursts({("aiops-webhook", "w:9844"): 40.0, ("x", "y"): 0.0}, 1.0)

    assert [(f.labels["job"], f.value) for f in found] == [("aiops-webhook", 40.0)]
