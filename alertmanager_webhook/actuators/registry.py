"""Builds one actuator per action name from the config and the injected edges."""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from alertmanager_webhook.actuators.base import Actuator, NoAction
from alertmanager_webhook.actuators.caps import CpuCap, MemoryHigh
from alertmanager_webhook.actuators.command import Command, Runner, SlurmUpdate
from alertmanager_webhook.actuators.gpu import GpuPowerLimit, NvmlLoader, load_pynvml
from alertmanager_webhook.actuators.kubernetes import (
    DeploymentScale,
    KubernetesClient,
    PodResize,
)
from alertmanager_webhook.actuators.priority import Renice, Signal
from alertmanager_webhook.actuators.spawn import run_in_session
from alertmanager_webhook.cgroups import Cgroups
from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.processes import ProcessFinder


@dataclass
class Edges:
    """Everything outside the process that actuators touch, for tests to replace."""

    finder: ProcessFinder
    cgroups: Cgroups
    run: Runner = run_in_session
    nvml: NvmlLoader = load_pynvml
    k8s_token: str = field(default="", repr=False)
    k8s_session: requests.Session | None = None


def build_actuators(config: WebhookConfig, edges: Edges) -> dict[str, Actuator]:
    actuators: dict[str, Actuator] = {
        "none": NoAction(),
        "cpu_cap": CpuCap(edges.finder, edges.cgroups),
        "memory_high": MemoryHigh(edges.finder, edges.cgroups),
        "renice": Renice(edges.finder),
        "signal": Signal(edges.finder),
        "command": Command(edges.run),
        "slurm_update": SlurmUpdate(config.scontrol, edges.run),
        "gpu_power_limit": GpuPowerLimit(edges.nvml),
    }
    if config.kubernetes is not None:
        client = KubernetesClient(config.kubernetes, edges.k8s_token, edges.k8s_session)
        actuators["k8s_resize"] = PodResize(
            client, config.kubernetes.resize_subresource
        )
        actuators["k8s_scale"] = DeploymentScale(client)
    return actuators
