"""What the worker's parts share, handed to each where the worker wires them.

Recovery, applying and restoring read the same queue, policies, actuators and
clock, take targets through the same claims and record ends through the same
results: one bundle rather than the same eight arguments apiece.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from alertmanager_webhook.actuators.base import Actuator
from alertmanager_webhook.forwarded_metrics import ForwardedMetrics
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.start_journal import StartJournal
from alertmanager_webhook.worker.claims import Claims
from alertmanager_webhook.worker.results import Results


@dataclass(frozen=True)
class Shared:
    """The objects every part of one worker reads and writes through."""

    journal: StartJournal
    jobs: Jobs
    policies: Mapping[str, PolicyConfig]
    actuators: Mapping[str, Actuator]
    # In the worker's own process, updates relayed to the server's registry.
    metrics: WebhookMetrics | ForwardedMetrics
    clock: Callable[[], float]
    claims: Claims
    results: Results


class Part:
    """A part of the worker; holds what the parts share as its own attributes."""

    def __init__(self, shared: Shared) -> None:
        self._journal = shared.journal
        self._jobs = shared.jobs
        self._policies = shared.policies
        self._actuators = shared.actuators
        self._metrics = shared.metrics
        self._clock = shared.clock
        self._claims = shared.claims
        self._results = shared.results
