"""A policy's settings: which alerts it matches, its action and parameters.

What each action's parameters must be is checked in params.py; a policy that
could never act stops the receiver at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from aiops_common.config import check
from alertmanager_webhook.params import check_params

ActionName = Literal[
    "none",
    "cpu_cap",
    "memory_high",
    "renice",
    "signal",
    "command",
    "gpu_power_limit",
    "k8s_resize",
    "k8s_scale",
    "slurm_update",
]

# The longest a policy's action may run: a stopping receiver waits for it.
MAX_TIMEOUT_SECONDS = 86400


@dataclass(frozen=True)
class RecommendConfig:
    """Where a policy reads a parameter from: one PromQL query per alert.

    `query` may name alert labels as `{label}`; their values are escaped before
    they are put into the query. The query must return one sample.
    """

    prometheus_url: str
    query: str
    param: str
    timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        check(
            self.prometheus_url.startswith(("http://", "https://")),
            "prometheus_url",
            f"expected an http(s) URL, got {self.prometheus_url!r}",
        )
        check(bool(self.query.strip()), "query", "must not be empty")
        check(bool(self.param), "param", "must name the parameter to fill")
        check(self.timeout_seconds > 0, "timeout_seconds", "must be above 0")


@dataclass(frozen=True)
class PolicyConfig:
    """Which alerts a remediation applies to, and with what parameters.

    `match` is label equality: every pair must be present on the alert. What
    `params` an action needs is checked here, so that a policy that could
    never act stops the receiver at start.
    """

    name: str
    match: dict[str, str]
    action: ActionName
    params: dict[str, float | str] = field(default_factory=dict)
    # For `command`: the program and its arguments; `{label}` is replaced by
    # the alert's label value, which must look like a plain name.
    argv: tuple[str, ...] = ()
    # Empty means the receiver's mode; a policy may only be more cautious.
    mode: Literal["", "dry-run", "approve", "apply"] = ""
    cooldown_seconds: float = 300.0
    retries: int = 0
    timeout_seconds: float = 30.0
    # Lets a `command` action be run again after a crash left its outcome
    # unknown; the other actions declare this themselves.
    idempotent: bool = False
    # A resolved alert restores what the action changed. Where the change is
    # what resolved the alert (a CPU cap ends the CPU anomaly), restoring
    # would start the anomaly again: false keeps the change until a person
    # lifts it or its processes exit.
    restore_on_resolve: bool = True
    recommend: RecommendConfig | None = None

    def __post_init__(self) -> None:
        check(bool(self.name), "name", "must not be empty")
        check(bool(self.match), "match", "needs at least one label to match on")
        check(self.cooldown_seconds >= 0, "cooldown_seconds", "must be 0 or more")
        check(0 <= self.retries <= 10, "retries", "must be 0 to 10")
        check(
            0 < self.timeout_seconds <= MAX_TIMEOUT_SECONDS,
            "timeout_seconds",
            f"must be above 0 and at most {MAX_TIMEOUT_SECONDS} (a day): a "
            "stopping receiver waits this long for running actions, got "
            f"{self.timeout_seconds:g}",
        )
        check(
            not self.argv or bool(self.argv[0]),
            "argv",
            "the program (argv[0]) must not be empty",
        )
        check(
            not any("\0" in arg for arg in self.argv),
            "argv",
            "must not hold a NUL character: no program can be passed one",
        )
        check(
            self.action == "command" or not self.argv,
            "argv",
            f"only a command action takes argv, not {self.action!r}",
        )
        check_params(self)

    def number(self, key: str) -> float | None:
        value = self.params.get(key)
        return value if isinstance(value, float) else None
