"""One series' allocation over time: the protocol's timing around a policy.

The Sizer turns a policy's estimates into changes that a resize can follow:
no decision before the warm-up is over, at most one change per update period
(the first one a period after the warm-up), a raise as soon as the period
allows once the series has run short (carrying a climb over the period that
raise locks), never a memory size below a reading that ran short (an OOM
kill), never above the resource's full size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
    # A raise also carries the rise of the last `trend_window` periods across
    # the period it locks; 0 turns the projection off. Short, so that a ramp
    # that began minutes before it ran short (a model loading, a job's next
    # phase) is seen as one, not averaged away with the flat hour before it.
    trend_window: float = 0.1
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
            value = max(value, self._bounded(self._reaction(now)))
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

    def _reaction(self, now: float) -> float:
        # A raise locks the allocation for a period. Usage that ran short while
        # climbing (a model loading, a leak) climbs on, and a raise to its peak
        # alone runs short for the rest of the period, reading after reading.
        raised = self._violation_peak * (1 + self._rules.react_margin)
        window = self._rules.trend_window * self._spec.period_seconds
        if window <= 0:
            return raised
        t, u = self._history.t, self._history.u
        lo = int(np.searchsorted(t, now - window))
        rise = climb_rate(t[lo:], u[lo:]) * self._spec.period_seconds
        # A fast load (GPU memory filling in seconds) extrapolates to any size;
        # at most doubling keeps one reaction from sizing a series for ten.
        return max(raised, self._violation_peak + min(rise, self._violation_peak))

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
        self._due = next_due(due, now, self._spec.period_seconds)
        self._violations = 0
        self._violation_peak = 0.0


def next_due(due: float, now: float, period: float) -> float:
    """The first point of the grid `due + k * period` (k >= 0) after `now`.

    Computed, not stepped to: a timestamp far off the others (one in
    milliseconds among seconds) is millions of periods away.
    """
    if due > now:
        return due
    due += (math.floor((now - due) / period) + 1) * period
    # The division rounds; one period either way puts right what it did.
    if due - period > now:
        due -= period
    elif due <= now:
        due += period
    # Where timestamps dwarf the period (1e20 s), adding it no longer changes a
    # float: the next float after `now` stands for the grid point.
    return due if due > now else math.nextafter(now, math.inf)


# Of the steps between readings, the share that must rise for a climb.
CLIMB_SHARE = 2 / 3


def climb_rate(t: np.ndarray, u: np.ndarray) -> float:
    """How fast readings climb, per second, from the first reading to the last.

    Only a rise that most steps share is a climb, so that one jump to a new
    level (a step, which the reaction's margin covers) does not read as one.
    First to last, not the median step, which understates a ramp that climbs
    in uneven steps. 0 when falling, flat or jumping.
    """
    if t.size < 3 or t[-1] <= t[0]:
        return 0.0
    if np.mean(np.diff(u) > 0) < CLIMB_SHARE:
        return 0.0
    return max(float((u[-1] - u[0]) / (t[-1] - t[0])), 0.0)
