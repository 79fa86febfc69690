"""The mount table reader shared by the exporter and the receiver."""

from __future__ import annotations

from aiops_common.mountinfo import MountLine, mount_lines

TABLE = """\
25 1 0:23 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/l
30 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 master:3 - tmpfs tmpfs ro,mode=755
31 30 0:27 /kube\\040pods /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct
not a mount line
32 30 0:28 / /sys/fs/cgroup/unified rw
"""


def test_mount_lines_read_each_mount_past_its_optional_fields() -> None:
    assert mount_lines(TABLE) == [
        MountLine("/", "/", "overlay", ("rw", "lowerdir=/l")),
        MountLine("/", "/sys/fs/cgroup", "tmpfs", ("ro", "mode=755")),
        MountLine(
            "/kube pods", "/sys/fs/cgroup/cpu", "cgroup", ("rw", "cpu", "cpuacct")
        ),
    ]
