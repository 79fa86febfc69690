"""Security findings from the exporter's GPU process series: processes no
allowed user or container owns, mining-like use, users new to a host's GPUs,
and bursts of refused credentials. Pure functions over plain records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

UNOWNED = "unowned_gpu_process"
MINING = "mining_suspected"
NEW_USER = "new_gpu_user"
AUTH_FAILURES = "auth_failures"


@dataclass(frozen=True)
class GpuProcess:
    """One group of processes on one GPU, as aiops_gpu_processes labels it."""

    instance: str
    gpu: str
    command: str
    user: str
    container_id: str
    processes: float = 1.0
    # Lowest SM share and highest memory over the mining window; None if unknown.
    min_sm_ratio: float | None = None
    max_memory_bytes: float | None = None


@dataclass(frozen=True)
class Finding:
    """One finding: its kind, the labels it is exported with, and its value."""

    kind: str
    labels: Mapping[str, str]
    value: float
    detail: str


def unowned(
    processes: Iterable[GpuProcess],
    allowed_users: Sequence[str],
    allowed_containers: Sequence[str],
) -> list[Finding]:
    """Processes whose user and container are both outside the allow lists."""
    if not allowed_users and not allowed_containers:
        return []
    users, containers = set(allowed_users), set(allowed_containers)
    found = []
    for p in processes:
        if p.user in users or (p.container_id and p.container_id in containers):
            continue
        found.append(
            Finding(
                UNOWNED,
                {
                    "instance": p.instance,
                    "gpu": p.gpu,
                    "user": p.user,
                    "command": p.command,
                    "container_id": p.container_id,
                },
                p.processes,
                f"{p.command} of user {p.user!r} runs on GPU {p.gpu} and no "
                "allowed user or container owns it",
            )
        )
    return found


def mining(
    processes: Iterable[GpuProcess],
    miner_names: Sequence[str],
    min_sm_ratio: float,
    max_memory_bytes: float,
) -> list[Finding]:
    """A known miner's name, or full SM use with little memory all window long."""
    names = {n.lower() for n in miner_names}
    found = []
    for p in processes:
        named = p.command.lower() in names
        pattern = (
            p.min_sm_ratio is not None
            and p.max_memory_bytes is not None
            and p.min_sm_ratio >= min_sm_ratio
            and p.max_memory_bytes <= max_memory_bytes
        )
        if not (named or pattern):
            continue
        why = "a known miner's name" if named else "sustained full GPU use, tiny memory"
        found.append(
            Finding(
                MINING,
                {
                    "instance": p.instance,
                    "gpu": p.gpu,
                    "user": p.user,
                    "command": p.command,
                    "reason": "name" if named else "pattern",
                },
                1.0,
                f"{p.command} of user {p.user!r} on GPU {p.gpu}: {why}",
            )
        )
    return found


def new_users(
    now: Mapping[tuple[str, str], float], before: Mapping[tuple[str, str], float]
) -> list[Finding]:
    """Users holding GPUs on a host now, absent from it over the lookback.

    Both map (instance, user) to the GPUs held. A host with no history at all
    is new to the diagnosis, not to its users, and gives no finding.
    """
    known_hosts = {instance for instance, _ in before}
    found = []
    for (instance, user), gpus in sorted(now.items()):
        if gpus <= 0 or instance not in known_hosts or (instance, user) in before:
            continue
        found.append(
            Finding(
                NEW_USER,
                {"instance": instance, "user": user},
                gpus,
                f"user {user!r} took {gpus:g} GPU(s) on {instance}, "
                "none in the lookback before",
            )
        )
    return found


def auth_bursts(
    failures: Mapping[tuple[str, str], float], threshold: float
) -> list[Finding]:
    """Refused requests per (job, instance) over the window, at the threshold."""
    return [
        Finding(
            AUTH_FAILURES,
            {"job": job, "instance": instance},
            count,
            f"{count:g} refused requests at {job} on {instance}",
        )
        for (job, instance), count in sorted(failures.items())
        if count >= threshold
    ]
