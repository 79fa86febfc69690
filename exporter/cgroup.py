"""Names the container, Kubernetes pod and systemd unit of a process from the
text of its /proc/<pid>/cgroup, in the cgroup v1 and v2 layouts of docker,
containerd, cri-o and podman, with the cgroupfs or the systemd driver."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A 64-hex component is a container under cgroupfs drivers: /docker/<id>,
# /kubepods/burstable/pod<uid>/<id>, containerd's /<namespace>/<id>.
_BARE_ID = re.compile(r"^([0-9a-f]{64})$")
# The systemd driver wraps the id in a scope named after the runtime; cri-o and
# podman also put each container's conmon monitor in one of its own.
_SCOPE_ID = re.compile(
    r"^(?:docker|cri-containerd|crio|crio-conmon|libpod|libpod-conmon|nerdctl)"
    r"-([0-9a-f]{64})\.scope$"
)
# Pod slices: pod<uid> under cgroupfs, kubepods-<qos>-pod<uid_with_underscores>
# .slice under systemd, which cannot hold dashes inside a slice name.
_POD = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
    r"(?:\.slice)?$"
)


@dataclass(frozen=True)
class CgroupIdentity:
    """Empty strings where the process is not in a container, pod or unit."""

    container_id: str = ""
    pod_uid: str = ""
    unit: str = ""


NO_CGROUP = CgroupIdentity()


def parse_cgroup(text: str) -> CgroupIdentity:
    """Read one /proc/<pid>/cgroup; unknown layouts give empty fields."""
    container = pod = unit = ""
    for path, names_unit in _paths(text):
        for part in path.split("/"):
            if not container:
                match = _BARE_ID.match(part) or _SCOPE_ID.match(part)
                if match:
                    container = match.group(1)
            if not pod:
                match = _POD.search(part)
                if match:
                    pod = match.group(1).replace("_", "-")
            # The deepest service wins: user@1000.service/app.slice/x.service is
            # the user's x.service, not their whole session manager.
            if names_unit and part.endswith(".service"):
                unit = part
        if container:
            break
    return CgroupIdentity(container_id=container, pod_uid=pod, unit=unit)


def _paths(text: str) -> list[tuple[str, bool]]:
    # v2 has one line "0::<path>"; v1 has one line per hierarchy, and hybrid
    # hosts have both with the v2 one often left at "/". The v2 line and the
    # systemd one name the unit; any of them names the container.
    first: list[tuple[str, bool]] = []
    rest: list[tuple[str, bool]] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or parts[2] in ("", "/"):
            continue
        if parts[1] in ("", "name=systemd"):
            first.append((parts[2], True))
        else:
            rest.append((parts[2], False))
    return first + rest
