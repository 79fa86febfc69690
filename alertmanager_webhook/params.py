"""The parameters each action needs, checked when the config is loaded.

A policy that could never act stops the receiver at start, with a message
naming the key, rather than failing on the first alert.
"""

from __future__ import annotations

import math
import re
import signal
from typing import TYPE_CHECKING

from aiops_common.config import ConfigError, check
from alertmanager_webhook.templates import TemplateError, arg_labels

if TYPE_CHECKING:
    from alertmanager_webhook.policy_config import PolicyConfig

# Signals a policy may name; stopping and killing are there on purpose, because
# a policy has to spell them out and the target checks still apply.
SIGNALS = (
    "SIGTERM",
    "SIGINT",
    "SIGHUP",
    "SIGQUIT",
    "SIGKILL",
    "SIGSTOP",
    "SIGCONT",
    "SIGUSR1",
    "SIGUSR2",
)
IONICE_CLASSES = ("idle", "best-effort")

_SLURM_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")


def check_params(policy: PolicyConfig) -> None:
    """Raise ConfigError naming the first parameter the action cannot use."""
    action, params = policy.action, policy.params
    recommended = policy.recommend.param if policy.recommend else None

    def positive(key: str, what: str) -> None:
        value = policy.number(key)
        ok = value is not None and value > 0 and math.isfinite(value)
        check(ok, f"params.{key}", f"{action} needs {what} above 0, got {value!r}")

    if action == "cpu_cap":
        positive("cpu_cores", "a number of cores")
        fallback = policy.params.get("fallback_nice", 10.0)
        check(
            fallback in [float(n) for n in range(-20, 20)],
            "params.fallback_nice",
            f"must be a whole number from -20 to 19, got {fallback!r}",
        )
    elif action == "memory_high":
        positive("memory_bytes", "a number of bytes")
    elif action == "renice":
        nice = params.get("nice")
        check(
            nice is None or nice in [float(n) for n in range(-20, 20)],
            "params.nice",
            f"must be a whole number from -20 to 19, got {nice!r}",
        )
        ioclass = params.get("ionice_class")
        check(
            ioclass is None or ioclass in IONICE_CLASSES,
            "params.ionice_class",
            f"must be one of {', '.join(IONICE_CLASSES)}, got {ioclass!r}",
        )
        check(
            nice is not None or ioclass is not None,
            "params",
            "renice needs nice, ionice_class or both",
        )
    elif action == "signal":
        name = params.get("signal")
        check(
            name in SIGNALS and hasattr(signal, str(name)),
            "params.signal",
            f"must be one of {', '.join(SIGNALS)}, got {name!r}",
        )
    elif action == "command":
        check(bool(policy.argv), "argv", "a command action needs a program")
        for i, arg in enumerate(policy.argv):
            try:
                names = arg_labels(arg)
            except TemplateError as exc:
                raise ConfigError(
                    f"argv[{i}]: {arg!r} of policy {policy.name!r} has a {exc}"
                ) from exc
            check(
                i > 0 or not names,
                "argv[0]",
                f"the program must not come from labels, got {arg!r}",
            )
    elif action == "gpu_power_limit":
        positive("power_watts", "a power limit in watts")
    elif action == "k8s_resize":
        for key in ("cpu_cores", "memory_bytes"):
            if key in params:
                positive(key, "a size")
        check(
            bool({"cpu_cores", "memory_bytes"} & set(params)),
            "params",
            "k8s_resize needs cpu_cores, memory_bytes or both",
        )
    elif action == "k8s_scale":
        replicas = policy.number("replicas")
        check(
            replicas is not None and replicas >= 0 and replicas.is_integer(),
            "params.replicas",
            f"k8s_scale needs a whole number of replicas, got {replicas!r}",
        )
    elif action == "slurm_update":
        check(bool(params), "params", "slurm_update needs at least one field")
        for key in params:
            check(
                bool(_SLURM_FIELD.fullmatch(key)),
                f"params.{key}",
                "a Slurm field name is letters and digits",
            )

    if recommended is not None:
        check(
            recommended in params,
            "recommend.param",
            f"{recommended!r} is not one of the policy's params, whose value "
            "stays the fallback",
        )
