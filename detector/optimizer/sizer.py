"""One series' allocation over time: the protocol's timing around a policy.

The Sizer turns a policy's estimates into changes that a resize can follow:
no decision before the warm-up is over, at most one change per update period
(the first one a period after the warm-up), a raise as soon as the period
allows once the series has run short, never a memory size below a reading that
ran short (an OOM kill), never above the resource's full size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from detector.optimizer.estimate import Estimate, Estimator
from detector.optimizer.history import History
from detector.optimizer.resources import ResourceSpec


@dataclass(frozen=True)
class Rules:
    """How a Sizer bends a policy's target; the reference policies use none."""

    react: bool = True
    # A reaction locks the allocation for a period: it leaves this much room
    # above the reading that ran short, as usage that grew once grows on.
    react_margin: float = 0.2
    oom_floor: bool = True
    cap_at_scale: bool = True


DEFAULT = Rules()
PLAIN = Rules(react=False, oom_floor=False, cap_at_scale=False)


class Sizer:
    """Decides, reading by reading, when a series' allocation changes and to what.

    Call decide(t) before observe(t, value) for every reading, and decide(t0)
    once at the end of the warm-up; both only look at readings before `t`.
    """

    def __init__(
        self,
        spec: ResourceSpec,
        estimator: Estimator,
        first_timestamp: float,
        rules: Rules = DEFAULT,
    ) -> None:
        self._spec = spec
        self._estimator = estimator
        self._rules = rules
        self._history = History()
        self.warmup_end = first_timestamp + spec.warmup_seconds
        self._allocation: float | None = None
        self._estimate: Estimate | None = None
        self._last_change = -math.inf
        self._due = math.inf
        self._violations = 0
        self._violation_peak = 0.0
        self._oom_floor = 0.0
        self.changes = 0
        self.violations_total = 0

    @property
    def spec(self) -> ResourceSpec:
        return self._spec

    @property
    def history(self) -> History:
        return self._history

    @property
    def allocation(self) -> float | None:
        return self._allocation

    @property
    def estimate(self) -> Estimate | None:
        """The policy's latest answer, before the rules bent its target."""
        return self._estimate

    @property
    def last_change(self) -> float:
        return self._last_change

    @property
    def violations_since_decision(self) -> int:
        return self._violations

    @property
    def violation_peak(self) -> float:
        return self._violation_peak

    @property
    def oom_floor(self) -> float:
        return self._oom_floor

    @property
    def react_margin(self) -> float:
        return self._rules.react_margin if self._rules.react else 0.0

    def decide(self, now: float) -> float | None:
        """The allocation that takes effect at `now`, or None for no change."""
        if now < self.warmup_end or len(self._history) == 0:
            return None
        if self._allocation is None:
            return self._apply(
                now, self._propose(now), self.warmup_end + self._spec.period_seconds
            )

        period = self._spec.period_seconds
        if now - self._last_change < period:
            return None
        reacting = self._rules.react and self._violations > 0
        if not reacting and now < self._due:
            return None

        value = self._propose(now)
        if reacting:
            value = max(
                value,
                self._bounded(self._violation_peak * (1 + self._rules.react_margin)),
            )
        # Decisions keep to a grid of whole periods from the warm-up's end, so
        # that sampling jitter does not drift them; a reaction restarts it.
        due = now + period if reacting else self._due + period
        if value == self._allocation:
            self._decided(now, due)
            return None
        return self._apply(now, value, due)

    def observe(self, timestamp: float, value: float) -> None:
        """Take one reading, made under the allocation decided before it."""
        allocation = self._allocation
        self._history.append(timestamp, value)
        self._estimator.observe(timestamp, value, allocation)
        if allocation is None or value <= allocation:
            return
        self._violations += 1
        self.violations_total += 1
        self._violation_peak = max(self._violation_peak, value)
        if self._spec.kind == "memory" and self._rules.oom_floor:
            self._oom_floor = max(self._oom_floor, value)

    def _propose(self, now: float) -> float:
        self._estimate = self._estimator.estimate(self, now)
        return self._bounded(self._estimate.target)

    def _bounded(self, value: float) -> float:
        value = max(value, self._oom_floor, 0.0)
        scale = self._spec.scale
        if self._rules.cap_at_scale and scale is not None:
            # Readings never exceed the full size, so more than it is pure waste;
            # an OOM floor above it is kept, as it was seen.
            value = max(min(value, scale), self._oom_floor)
        return float(value)

    def _apply(self, now: float, value: float, due: float) -> float:
        if self._allocation is not None:
            self.changes += 1
        self._allocation = value
        self._last_change = max(now, self.warmup_end)
        self._decided(now, due)
        return value

    def _decided(self, now: float, due: float) -> None:
        # Grid points passed without readings are not made up for later.
        period = self._spec.period_seconds
        while due <= now:
            due += period
        self._due = due
        self._violations = 0
        self._violation_peak = 0.0
