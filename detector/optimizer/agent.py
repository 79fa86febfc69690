"""The learning policy: a bandit that picks percentile, margin and decay per workload.

At each decision the policy picks one arm (see arms.py) or holds the
allocation in force. A series does not react to its allocation in a replay,
and hardly does below its limit in service, so once a period is over the cost
of every arm over it is known (full-information feedback): slack and short
readings under the pooled cost, plus a cost per change. Holding is scored as
the Sizer plays it: a short reading is met with a raise at once.

Each workload keeps a decayed record of every arm's cost, shrunk towards a
prior (the per-job model selection of Google's Autopilot); its warm-up is
replayed at its first decision, so that it starts with a record of its own.
The prior is what a network learnt offline (prior.py) expects of each arm in
the workload's context, or, without one, the fleet's running average.
The prior's error on the fleet is corrected online as periods settle.
Optionally a small PyTorch network learns online, from context features
(burstiness, trend, recent violations...), how far a record is off.
Learning is online and causal: a period's outcome is used only once its end
has passed, and only what came before a decision enters it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

import numpy as np

from detector.optimizer.agent_config import AgentConfig
from detector.optimizer.estimate import Estimate, SeriesView
from detector.optimizer.features import (
    ARM_FEATURES,
    NAMES,
    arm_features,
    context,
    recent,
)
from detector.optimizer.fleet_costs import FleetCosts
from detector.optimizer.outcome import Outcome, Period, Record, score
from detector.optimizer.prior import ArmPrior, PriorDrift
from detector.optimizer.resources import ResourceSpec
from detector.optimizer.steering import Steering


@dataclass
class _Arrays:
    t: np.ndarray
    u: np.ndarray


class _PastView:
    """A series as it stood at an earlier instant, to replay its warm-up."""

    allocation = None
    last_change = -math.inf
    violations_since_decision = 0
    violation_peak = 0.0
    oom_floor = 0.0

    def __init__(self, view: SeriesView, at: float) -> None:
        cut = int(np.searchsorted(view.history.t, at, side="left"))
        self.spec = view.spec
        self.history = _Arrays(view.history.t[:cut], view.history.u[:cut])
        self.react_margin = view.react_margin


class BanditPolicy:
    """One learner shared by every series of one resource."""

    name = "bandit"

    def __init__(
        self,
        config: AgentConfig = AgentConfig(),
        prior: ArmPrior | None = None,
        listener: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.config = config
        self.prior = prior
        # Hears every settled period, to collect training data offline.
        self._listener = listener
        grid = config.arms
        self._grid = grid
        self._descriptors = grid.descriptors()
        self.n_arms = len(self._descriptors) + 1  # the last one holds
        self._default = grid.arms.index(
            (
                grid.half_lives[-1],
                grid.percentiles[-1],
                grid.margins[min(2, len(grid.margins) - 1)],
                grid.trends[0],
            )
        )
        self._pending: list[tuple[float, int, Period]] = []
        self._order = count()
        self._fleet = FleetCosts(self.n_arms, self._default, config.violation_weight)
        self.periods = 0

        self._steering = (
            Steering(config, len(NAMES) + ARM_FEATURES) if config.use_network else None
        )
        if prior is not None and prior.inputs != len(NAMES) + ARM_FEATURES:
            raise ValueError(
                f"the prior takes {prior.inputs} inputs, the policy gives "
                f"{len(NAMES) + ARM_FEATURES}"
            )
        self._drift = PriorDrift(self.n_arms)
        self._with_inputs = (
            self._steering is not None or prior is not None or listener is not None
        )

    def estimator(self, spec: ResourceSpec, key: str) -> _BanditEstimator:
        if spec.kind == "memory":
            self._fleet.weight = (
                self.config.violation_weight * self.config.memory_violation_factor
            )
        zeros = np.zeros(self.n_arms)
        return _BanditEstimator(self, Record(zeros, zeros.copy(), zeros.copy()))

    def advance(self, now: float) -> None:
        """Settle every period that ended by `now`; learn when enough is new."""
        while self._pending and self._pending[0][0] <= now:
            _, _, period = heapq.heappop(self._pending)
            self._settle(period)
        if self._steering is not None:
            self._steering.learn(self._fleet.of)

    def decide(self, view: SeriesView, now: float, record: Record) -> Estimate:
        """Pick an arm for the period from `now`, and remember to score it."""
        spec = view.spec
        if not record.backfilled:
            record.backfilled = True
            self._backfill(view, now, record)

        values, inputs, reference = self._arms(view, now, record)
        base = self._record_costs(values, inputs, reference, record, spec)
        penalty = np.where(np.isnan(values), np.inf, 0.0)
        if view.allocation is not None:
            per_period = max(spec.period_seconds / spec.step_seconds, 1.0)
            change = self.config.change_cost * 100.0 * self._fleet.weight / per_period
            penalty = penalty + change * (values != view.allocation)
        by_records = chosen = int(np.argmin(base + penalty))
        by_network = -1
        if self._steering is not None:
            chosen, by_network = self._steering.pick(inputs, base, penalty, by_records)

        period = Period(
            record,
            now,
            now + spec.period_seconds,
            view.history,
            values,
            inputs,
            reference,
            chosen,
            base,
            by_records,
            by_network,
            view.react_margin,
        )
        heapq.heappush(self._pending, (period.end, next(self._order), period))
        target = float(values[chosen])
        # Bounds an operator can read: below the last period's p90 the series
        # would have run short often; above its long peak plus the reaction
        # margin, no reading has needed more.
        t, u = view.history.t, view.history.u
        lower = float(np.quantile(recent(t, u, now - spec.period_seconds), 0.9))
        upper = reference * (1 + view.react_margin)
        return Estimate(min(lower, target), target, max(upper, target))

    # -- arms and their expected costs -----------------------------------

    def _arms(
        self, view: SeriesView | _PastView, now: float, record: Record
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Every arm's allocation (the hold arm last), its inputs, the reference."""
        spec = view.spec
        period = spec.period_seconds
        t, u = view.history.t, view.history.u
        held = view.allocation if view.allocation is not None else math.nan
        values = np.append(self._grid.values(t, u, now, period), held)
        values = np.maximum(values, view.oom_floor)
        if spec.scale is not None:
            values = np.maximum(np.minimum(values, spec.scale), view.oom_floor)

        # Sizes are compared with the long peak, so that records of a series
        # whose level moved stay comparable.
        reference = max(float(recent(t, u, now - 16 * period).max()), 1e-12)
        if not self._with_inputs:
            # Only the networks read the inputs.
            return values, np.empty((0, 0), dtype=np.float32), reference
        arm = arm_features(self._descriptors, values, reference, view, now, record)
        ctx = context(view, now)  # type: ignore[arg-type]
        inputs = np.concatenate(
            [np.broadcast_to(ctx, (self.n_arms, len(ctx))), arm], axis=1
        ).astype(np.float32)
        return values, inputs, reference

    def _record_costs(
        self,
        values: np.ndarray,
        inputs: np.ndarray,
        reference: float,
        record: Record,
        spec: ResourceSpec,
    ) -> np.ndarray:
        """Expected cost per reading: the prior, shrunk to the record."""
        fleet = self._prior_costs(values, inputs, reference)
        if record.readings == 0:
            return fleet
        own = self._fleet.per_reading(
            record.slack, record.allocated, record.violated, record.readings, reference
        )
        prior = self.config.series_prior_periods * max(
            spec.period_seconds / spec.step_seconds, 1.0
        )
        return (fleet * prior + own * record.readings) / (prior + record.readings)

    def _prior_costs(
        self, values: np.ndarray, inputs: np.ndarray, reference: float
    ) -> np.ndarray:
        """What the learnt prior expects of each arm, or the fleet's average."""
        if self.prior is None:
            return self._fleet.average()
        # TODO: on memory a short share off by 0.001 moves an arm's cost by
        # 4 points, more than the slack between neighbouring margins; the
        # prior is not that sharp, so held out it trades slack for short
        # readings and stays opt-in. A prior over the next period's readings
        # (quantiles of size over peak) would give every arm from one model.
        slack, short = self._drift.corrected(*self.prior.predict(inputs))
        allocated = np.nan_to_num(values, nan=0.0) / reference
        share, mean = self._fleet.pooled()
        # Before any outcome the fleet's mean size is unknown: this series is it.
        size = reference / mean if self._fleet.sized else 1.0
        weight = self._fleet.weight
        return 100.0 * (slack - share * allocated) * size + 100.0 * weight * short

    # -- learning ---------------------------------------------------------

    def _backfill(self, view: SeriesView, now: float, record: Record) -> None:
        """Replay the warm-up: arms as they would have been, on what followed."""
        period = view.spec.period_seconds
        first = float(view.history.t[0])
        starts = []
        at = now - period
        while at - first >= period / 2:
            starts.append(at)
            at -= period
        # Oldest first, so that the record decays as it does in service: the
        # last period before the decision weighs the most.
        for at in reversed(starts):
            past = _PastView(view, at)
            values, inputs, reference = self._arms(past, at, record)
            values[-1] = values[self._default]
            self._settle(
                Period(
                    record,
                    at,
                    at + period,
                    view.history,
                    values,
                    inputs,
                    reference,
                    self._default,
                    None,
                    react_margin=view.react_margin,
                )
            )

    def _settle(self, period: Period) -> None:
        outcome = score(period)
        if outcome is None:
            return
        if self._listener is not None:
            self._listener(outcome)
        if self.prior is not None:
            self._drift.add(
                self.prior.predict(outcome.inputs),
                outcome.slack,
                outcome.violated,
                outcome.readings,
            )
        if self._steering is not None:
            self._steering.settle(period, outcome, self._fleet.of(outcome))
        self._fleet.add(outcome, period.chosen)
        record, d = period.record, self.config.series_decay
        record.slack = record.slack * d + outcome.slack
        record.allocated = record.allocated * d + outcome.allocated
        record.violated = record.violated * d + outcome.violated
        record.readings = record.readings * d + outcome.readings
        self.periods += 1


@dataclass
class _BanditEstimator:
    policy: BanditPolicy
    record: Record

    def observe(self, timestamp: float, value: float, allocation: float | None) -> None:
        pass

    def estimate(self, view: SeriesView, now: float) -> Estimate:
        return self.policy.decide(view, now, self.record)
