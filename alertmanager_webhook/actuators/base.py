"""What every actuator offers: a plan that needs no privilege, apply and restore.

A plan is recorded before anything changes; its `spec` is all that apply needs,
so that an approved action runs what the approver read. Apply returns what
restore needs to undo it, or None when the change cannot be undone. An
actuator that is not idempotent is also handed `began`, to call at the moment
its effect begins (start_journal.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.start_journal import Began

# planned: ready to apply; skipped: nothing to do; refused: a target or label
# check said no; failed: the plan could not be made.
PLAN_RESULTS = ("planned", "skipped", "refused", "failed")

Params = Mapping[str, float | str]


class ActuatorError(Exception):
    """Applying or restoring failed; the message is recorded as the reason."""


@dataclass(frozen=True)
class Plan:
    """What an action would do, and the spec apply needs to do exactly that."""

    target: str
    text: str
    result: str = "planned"
    spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What apply did; `undo` is kept for restore, None when irreversible."""

    text: str
    undo: Mapping[str, Any] | None = None


class Actuator(Protocol):
    # Safe to run again when a crash left unknown whether it ran: it sets an
    # absolute state rather than adding to one.
    idempotent: bool

    def plan(
        self, labels: Mapping[str, str], policy: PolicyConfig, params: Params
    ) -> Plan: ...

    # Only an actuator that is not idempotent is handed `began`.
    def apply(self, spec: Mapping[str, Any], began: Began | None = None) -> Outcome: ...

    def restore(self, undo: Mapping[str, Any]) -> str: ...


def fmt_number(value: float | str) -> str:
    """Write a parameter as a person would: 100 rather than 100.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class NoAction:
    """The `none` action: the alert is recorded and nothing is done."""

    idempotent = True

    def plan(
        self, labels: Mapping[str, str], policy: PolicyConfig, params: Params
    ) -> Plan:
        return Plan("", "no action", "skipped")

    def apply(self, spec: Mapping[str, Any]) -> Outcome:
        return Outcome("nothing done")

    def restore(self, undo: Mapping[str, Any]) -> str:
        return "nothing to restore"
