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
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING

import numpy as np

from detector.optimizer.arms import ArmGrid
from detector.optimizer.estimate import Estimate, SeriesView
from detector.optimizer.features import NAMES, context, recent
from detector.optimizer.outcome import Outcome, Period, Record, score
from detector.optimizer.prior import SLACK_CAP, ArmPrior
from detector.optimizer.resources import ResourceSpec

if TYPE_CHECKING:
    from detector.optimizer.correction import Correction

ARM_FEATURES = 12


@dataclass(frozen=True)
class AgentConfig:
    """One configuration for every resource: arms, costs and learning."""

    arms: ArmGrid = field(default_factory=ArmGrid)
    # The pooled cost: slack% + violation_weight x violation%.
    violation_weight: float = 10.0
    # An OOM kill ends the workload where throttling only slows it down: a
    # short reading of a memory-like resource weighs this many times more.
    # 3 keeps memory's violation rate under the VPA-style one on the shared
    # traces with less slack than 4 (pod_memory_util 0.045% against 0.13%).
    memory_violation_factor: float = 3.0
    # In short readings: what one change is worth avoiding.
    change_cost: float = 0.2
    # A workload's record weighs as much as this many periods of the fleet's.
    series_prior_periods: float = 1.0
    # Per period, how much of a workload's record is kept. A job moves to its
    # next phase within hours (model load, serving, idle); a record that
    # halves every period follows the phase it is in, where one kept at 0.9
    # held a one-off jump against every lower arm for a day.
    series_decay: float = 0.5
    use_network: bool = False
    hidden: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    train_every: int = 32
    train_steps: int = 30
    batch_periods: int = 32
    buffer_periods: int = 5000
    min_periods: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for key in (
            "violation_weight",
            "memory_violation_factor",
            "series_prior_periods",
        ):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)!r}")
        if not 0 < self.series_decay <= 1:
            raise ValueError(
                f"series_decay must be in (0, 1], got {self.series_decay!r}"
            )
        if self.change_cost < 0:
            raise ValueError(f"change_cost must be >= 0, got {self.change_cost!r}")


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
        self._weight = config.violation_weight
        self._pending: list[tuple[float, int, Period]] = []
        self._order = count()
        self._outcomes: list[Outcome] = []
        self._fresh = 0
        self._fleet_cost = np.zeros(self.n_arms)
        self._fleet_readings = 0.0
        self._slack = 0.0
        self._allocated = 0.0
        self._readings = 0
        self.periods = 0

        self._correction: Correction | None = None
        if config.use_network:
            from detector.optimizer.correction import Correction

            self._correction = Correction(
                len(NAMES) + ARM_FEATURES,
                config.hidden,
                config.learning_rate,
                config.weight_decay,
                config.seed,
            )
        self._records_cost = 0.0
        self._network_cost = 0.0
        if prior is not None and prior.inputs != len(NAMES) + ARM_FEATURES:
            raise ValueError(
                f"the prior takes {prior.inputs} inputs, the policy gives "
                f"{len(NAMES) + ARM_FEATURES}"
            )
        # How far the prior has been off on this fleet, per arm: a resource
        # it learnt little of is corrected online as its periods settle.
        self._prior_slack_error = np.zeros(self.n_arms)
        self._prior_short_error = np.zeros(self.n_arms)
        self._prior_readings = 0.0
        self._with_inputs = (
            self._correction is not None or prior is not None or listener is not None
        )

    def estimator(self, spec: ResourceSpec, key: str) -> _BanditEstimator:
        if spec.kind == "memory":
            self._weight = (
                self.config.violation_weight * self.config.memory_violation_factor
            )
        zeros = np.zeros(self.n_arms)
        return _BanditEstimator(self, Record(zeros, zeros.copy(), zeros.copy()))

    def advance(self, now: float) -> None:
        """Settle every period that ended by `now`; learn when enough is new."""
        while self._pending and self._pending[0][0] <= now:
            _, _, period = heapq.heappop(self._pending)
            self._settle(period)
        if self._fresh >= self.config.train_every:
            self._fresh = 0
            if (
                self._correction is not None
                and len(self._outcomes) >= self.config.min_periods
            ):
                self._train()

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
            change = self.config.change_cost * 100.0 * self._weight / per_period
            penalty = penalty + change * (values != view.allocation)
        costs = base + penalty
        by_records = chosen = int(np.argmin(costs))
        by_network = -1
        corrected = self._corrected(inputs, base)
        if corrected is not None:
            by_network = int(np.argmin(corrected + penalty))
            # The network steers only while its picks have cost less than the
            # records' picks, both scored on what followed.
            if self._network_cost < self._records_cost:
                costs = corrected + penalty
                chosen = by_network

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
        small = reference * 1e-3
        safe = np.maximum(np.nan_to_num(values, nan=reference), small)
        arm = np.zeros((self.n_arms, ARM_FEATURES), dtype=np.float32)
        arm[:-1, :4] = self._descriptors
        arm[-1, 4] = 1.0
        arm[:, 5] = np.clip(np.log(safe / reference), -4, 4)
        peak = float(recent(t, u, now - period).max())
        arm[:, 6] = np.clip(np.log(safe / max(peak, small)), -4, 4)
        arm[:, 7] = np.clip(np.log(safe / max(float(u[-1]), small)), -4, 4)
        if record.readings:
            arm[:, 8] = record.violated / record.readings
            arm[:, 9] = record.slack / record.readings
        arm[:, 10] = math.log1p(record.readings / max(period / spec.step_seconds, 1.0))
        arm[:, 11] = float(spec.kind == "memory")
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
        share, mean = self._pooled()
        own = (
            100.0 * (record.slack - share * record.allocated) * reference / mean
            + 100.0 * self._weight * record.violated
        ) / record.readings
        prior = self.config.series_prior_periods * max(
            spec.period_seconds / spec.step_seconds, 1.0
        )
        return (fleet * prior + own * record.readings) / (prior + record.readings)

    def _prior_costs(
        self, values: np.ndarray, inputs: np.ndarray, reference: float
    ) -> np.ndarray:
        """What the learnt prior expects of each arm, or the fleet's average."""
        if self.prior is None:
            return self._fleet_average()
        # TODO: on memory a short share off by 0.001 moves an arm's cost by
        # 4 points, more than the slack between neighbouring margins; the
        # prior is not that sharp, so held out it trades slack for short
        # readings and stays opt-in. A prior over the next period's readings
        # (quantiles of size over peak) would give every arm from one model.
        slack, short = self.prior.predict(inputs)
        if self._prior_readings:
            slack = slack + self._prior_slack_error / self._prior_readings
            short = short + self._prior_short_error / self._prior_readings
        allocated = np.nan_to_num(values, nan=0.0) / reference
        share, mean = self._pooled()
        # Before any outcome the fleet's mean size is unknown: this series is it.
        size = reference / mean if self._allocated > 0 else 1.0
        return 100.0 * (slack - share * allocated) * size + 100.0 * self._weight * short

    def _corrected(self, inputs: np.ndarray, base: np.ndarray) -> np.ndarray | None:
        if self._correction is None:
            return None
        correction = self._correction.predict(inputs)
        return None if correction is None else base + correction

    def _fleet_average(self) -> np.ndarray:
        if self._fleet_readings == 0:
            # Before any outcome: the long-horizon peak with a small margin.
            prior = np.ones(self.n_arms)
            prior[self._default] = 0.0
            return prior
        return self._fleet_cost / self._fleet_readings

    def _pooled(self) -> tuple[float, float]:
        """The pooled slack share and the mean allocation of the choices so far."""
        if self._allocated <= 0:
            return 0.5, 1.0
        return self._slack / self._allocated, self._allocated / max(self._readings, 1)

    def _cost(self, outcome: Outcome) -> np.ndarray:
        """Each arm's cost per reading over one period, linearised.

        Pooled slack S/A moves by (dS - s dA) / A when one period changes, so a
        period adds 100 (S - s A) / a_mean + 100 w V over its readings.
        """
        share, mean = self._pooled()
        return (
            100.0
            * (outcome.slack - share * outcome.allocated)
            * outcome.reference
            / mean
            + 100.0 * self._weight * outcome.violated
        ) / outcome.readings

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
            slack, short = self.prior.predict(outcome.inputs)
            # Clipped as in training: an idle series' slack is in the millions
            # of its near-zero reference.
            slack_share = np.minimum(outcome.slack / outcome.readings, SLACK_CAP)
            self._prior_slack_error += (slack_share - slack) * outcome.readings
            self._prior_short_error += outcome.violated - short * outcome.readings
            self._prior_readings += outcome.readings
        if period.by_network >= 0:
            cost = self._cost(outcome) * outcome.readings
            d = self.config.series_decay
            self._records_cost = self._records_cost * d + float(cost[period.by_records])
            self._network_cost = self._network_cost * d + float(cost[period.by_network])
        c, ref = period.chosen, outcome.reference
        self._slack += float(outcome.slack[c]) * ref
        self._allocated += float(outcome.allocated[c]) * ref
        self._readings += outcome.readings
        self._fleet_cost += self._cost(outcome) * outcome.readings
        self._fleet_readings += outcome.readings
        record, d = period.record, self.config.series_decay
        record.slack = record.slack * d + outcome.slack
        record.allocated = record.allocated * d + outcome.allocated
        record.violated = record.violated * d + outcome.violated
        record.readings = record.readings * d + outcome.readings

        # Only the network trains on past outcomes; kept without it, 5,000 of
        # them took some 50 MB of a service's memory for nothing.
        if outcome.base is not None and self._correction is not None:
            self._outcomes.append(outcome)
            if len(self._outcomes) > self.config.buffer_periods:
                del self._outcomes[0]
        self._fresh += 1
        self.periods += 1

    def _train(self) -> None:
        """Fit the network to how far the records were off, period by period."""
        assert self._correction is not None
        outcomes = [o for o in self._outcomes if o.base is not None]
        self._correction.fit(
            [o.inputs for o in outcomes],
            [self._cost(o) - o.base for o in outcomes],  # type: ignore[operator]
            [o.readings for o in outcomes],
            self.config.train_steps,
            self.config.batch_periods,
        )


@dataclass
class _BanditEstimator:
    policy: BanditPolicy
    record: Record

    def observe(self, timestamp: float, value: float, allocation: float | None) -> None:
        pass

    def estimate(self, view: SeriesView, now: float) -> Estimate:
        return self.policy.decide(view, now, self.record)
