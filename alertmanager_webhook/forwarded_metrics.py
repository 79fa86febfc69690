"""The worker process's metric updates, relayed to the server's registry.

The worker runs in a process of its own (worker_process.py); what it counts
is kept here, sent to the server in batches and applied to the one registry
that /metrics serves.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from alertmanager_webhook.metrics import WebhookMetrics

log = logging.getLogger(__name__)

# What the worker's process updates on the server's metrics, and how.
FORWARDED = {
    "actions": "inc",
    "dry_run_held_back": "inc",
    "restores": "inc",
    "worker_errors": "inc",
    "queue_depth": "set",
    "worker_last_success": "set",
    "action_latency": "observe",
    "apply_duration": "observe",
}


@dataclass(frozen=True)
class _Update:
    family: str
    labels: tuple[str, ...]
    value: float


@dataclass
class ForwardedMetrics:
    """The worker's view of WebhookMetrics: updates kept for the server to apply.

    Updates not yet sent when the worker is killed are lost with it (at most
    one batch); the database keeps every action's result regardless.
    """

    pending: list[_Update] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __getattr__(self, family: str) -> _Family:
        if family not in FORWARDED:
            raise AttributeError(family)
        return _Family(self, family, ())

    def take(self) -> list[_Update]:
        with self.lock:
            taken, self.pending = self.pending, []
        return taken


@dataclass(frozen=True)
class _Family:
    sink: ForwardedMetrics
    name: str
    values: tuple[str, ...]

    def labels(self, *values: str) -> _Family:
        return _Family(self.sink, self.name, values)

    def inc(self, amount: float = 1.0) -> None:
        self._keep(amount)

    def set(self, value: float) -> None:
        self._keep(value)

    def observe(self, value: float) -> None:
        self._keep(value)

    def _keep(self, value: float) -> None:
        with self.sink.lock:
            self.sink.pending.append(_Update(self.name, self.values, value))


def apply_updates(metrics: WebhookMetrics, updates: list[_Update]) -> None:
    """Apply the worker's metric updates to the server's registry."""
    for update in updates:
        method = FORWARDED.get(update.family)
        if method is None:
            log.warning("unknown metric from the worker family=%s", update.family)
            continue
        family = getattr(metrics, update.family)
        target = family.labels(*update.labels) if update.labels else family
        getattr(target, method)(update.value)
