"""The optimizer component: sizes series queried from Prometheus, each cycle.

Needs a range-query function (detector.prometheus.PrometheusClient.query_range)
and a clock, both injected. The detector's loop calls run_cycle() every cycle;
the work is done at most once per interval and the result is published as an
OptimizerSnapshot for OptimizerCollector to show. What it logs of odd input is
said in input_warnings.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import cast

from detector.optimizer.bounds import exported
from detector.optimizer.config import (
    SERVICE_RESOURCES,
    OptimizerConfig,
    PowerConfig,
    ResourceQuery,
    ServiceResource,
)
from detector.optimizer.estimate import Estimate
from detector.optimizer.fleet import Fleet
from detector.optimizer.input_warnings import InputWarnings
from detector.optimizer.policies import make_policy
from detector.optimizer.power import GPU_STATES, PowerAdvice, advise_fleet
from detector.optimizer.queries import (
    Limits,
    PowerReadings,
    Queries,
    QueryRange,
    is_away,
    what_to_check,
)
from detector.optimizer.readings import gather
from detector.optimizer.snapshot import (
    LabelPairs,
    OptimizerSnapshot,
    Recommendation,
    ResourceState,
)
from detector.prometheus import QueryError, Series

log = logging.getLogger(__name__)

# Stages whose failures are counted apart; all are exported from the start.
STAGES = ("query", "recommend", "power")


class Optimizer:
    """Keeps one Fleet per resource and turns its Sizers into a snapshot."""

    def __init__(
        self,
        config: OptimizerConfig,
        query_range: QueryRange,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._queries = Queries(query_range, config.history_seconds)
        self._clock = clock
        self._fleets: dict[str, Fleet] = {}
        for rq in config.resources:
            policy, rules = make_policy(config.policy)
            self._fleets[rq.resource] = Fleet(rq.spec, policy, rules, config.max_series)
        self._errors = dict.fromkeys(STAGES, 0)
        self._warnings = InputWarnings(
            [rq.resource for rq in config.resources], config.max_series
        )
        self._waiting = {rq.resource: -1 for rq in config.resources}
        self._last_run = -math.inf
        self._last_success = 0.0
        self._resource_states: dict[str, ResourceState] = {}
        self._power: tuple[PowerAdvice, ...] = ()
        self._gpus = dict.fromkeys(GPU_STATES, 0)
        # Replaced whole, never mutated: scrapes read it from another thread.
        self.snapshot = OptimizerSnapshot(
            errors=dict(self._errors),
            unit_mismatches=self._warnings.unit_mismatches,
            series_refused=self._refused(),
            interval_seconds=self._config.interval_seconds,
        )

    def run_cycle(self) -> bool:
        """Size everything if an interval has passed; False if nothing ran."""
        started = self._clock()
        if started - self._last_run < self._config.interval_seconds:
            return False
        self._last_run = started
        now = started - self._config.query_delay_seconds
        refused_before = self._refused()

        succeeded = self._run_stages(now)

        self._warnings.refused(refused_before, self._refused())
        if succeeded:
            self._last_success = self._clock()
        self._publish(max(0.0, self._clock() - started))
        return True

    def _run_stages(self, now: float) -> bool:
        """Query and size each resource, then advise on power; True if all did.

        A Prometheus that is away ends the cycle at its first failed query: each
        query after it would wait out its own timeout, and the detector's loop
        with it. The next interval tries again.
        """
        succeeded = True
        for rq in self._config.resources:
            try:
                usage, allocations = self._queries.resource(rq, now)
            except Exception as exc:  # stage boundary: log, count, go on
                if self._query_failed(f"resource={rq.resource}", exc):
                    return False
                succeeded = False
                continue
            succeeded = self._size(rq, usage, allocations) and succeeded

        if self._config.power is not None:
            succeeded = self._power_stage(self._config.power, now) and succeeded
        return succeeded

    def _size(
        self, rq: ResourceQuery, usage: list[Series], allocations: Limits
    ) -> bool:
        try:
            self.ingest(rq.resource, usage)
            self._resource_states[rq.resource] = self._state(rq, allocations)
        except Exception:  # stage boundary: log, count, go on
            log.exception("optimizer sizing failed resource=%s", rq.resource)
            self._errors["recommend"] += 1
            return False
        return True

    def _power_stage(self, config: PowerConfig, now: float) -> bool:
        try:
            readings = self._queries.power(config, now)
        except Exception as exc:  # stage boundary: log, count, go on
            self._query_failed("stage=power", exc)
            return False
        if readings.draws.duplicates:
            self._warnings.collapsed(
                "stage=power",
                config.labels,
                readings.draws.duplicates,
                "optimizer.power.labels",
            )
        try:
            self._advise_power(config, readings)
        except Exception:  # stage boundary: log, count, go on
            log.exception("optimizer power advice failed")
            self._errors["power"] += 1
            return False
        return True

    def _query_failed(self, what: str, exc: Exception) -> bool:
        """Log and count a failed query; True when Prometheus is away."""
        self._errors["query"] += 1
        if not isinstance(exc, QueryError):
            log.error("optimizer query failed %s", what, exc_info=exc)
            return False
        away = is_away(exc)
        # An expected failure: its reason and what to check say all a
        # traceback would.
        log.warning(
            "optimizer query failed %s error=%s; %s%s",
            what,
            exc,
            what_to_check(exc),
            "; the cycle's other queries wait for the next interval" if away else "",
        )
        return away

    def ingest(self, resource: str, series: Sequence[Series]) -> None:
        """Feed readings of `resource` that were queried elsewhere."""
        rq = next(r for r in self._config.resources if r.resource == resource)
        spec = SERVICE_RESOURCES[resource]
        readings = gather(series, rq.labels, spec.scale, spec.unit)
        self._warnings.readings(resource, readings)
        if readings.duplicates:
            self._warnings.collapsed(
                f"resource={resource}",
                rq.labels,
                readings.duplicates,
                "the resource's labels",
            )

        fleet = self._fleets[resource]
        fleet.feed(readings.points)
        cutoff = self._clock() - self._config.history_seconds
        gone = fleet.forget(cutoff)
        if gone:
            log.debug("forgot series resource=%s count=%d", resource, len(gone))
        # Readings older than the history are no longer read by any policy.
        for sizer in fleet.sizers.values():
            sizer.history.forget_before(cutoff)

    def _refused(self) -> dict[str, int]:
        return {resource: fleet.refused for resource, fleet in self._fleets.items()}

    # -- per resource ----------------------------------------------------

    def _state(self, rq: ResourceQuery, allocations: Limits) -> ResourceState:
        fleet = self._fleets[rq.resource]
        recommendations = []
        too_short = without = 0
        savings = 0.0
        for series_key, sizer in fleet.sizers.items():
            key = cast(LabelPairs, series_key)
            if sizer.allocation is None or sizer.estimate is None:
                too_short += 1
                continue
            recommendation = _recommendation(
                key,
                sizer.estimate,
                sizer.allocation,
                allocations.get(key),
                SERVICE_RESOURCES[rq.resource],
            )
            if recommendation.allocated is None:
                without += 1
            else:
                savings += recommendation.allocated - recommendation.target
            recommendations.append(recommendation)
        if too_short != self._waiting[rq.resource]:
            self._waiting[rq.resource] = too_short
            log.info(
                "series waiting for history resource=%s count=%d warmup_seconds=%g",
                rq.resource,
                too_short,
                rq.warmup_seconds,
            )
        if rq.allocation and without:
            log.debug("no allocation resource=%s series=%d", rq.resource, without)
        return ResourceState(
            rq.resource, rq.labels, tuple(recommendations), too_short, without, savings
        )

    # -- power -----------------------------------------------------------

    def _advise_power(self, config: PowerConfig, readings: PowerReadings) -> None:
        advice, states = advise_fleet(config, readings)
        if states != self._gpus:
            log.info(
                "gpu power advice %s", " ".join(f"{k}={v}" for k, v in states.items())
            )
        self._power = advice
        self._gpus = states

    def _publish(self, duration: float) -> None:
        order = [rq.resource for rq in self._config.resources]
        power = self._config.power
        self.snapshot = OptimizerSnapshot(
            resources=tuple(
                self._resource_states[r] for r in order if r in self._resource_states
            ),
            power_label_names=power.labels if power is not None else (),
            power=self._power,
            gpus=dict(self._gpus),
            errors=dict(self._errors),
            unit_mismatches=self._warnings.unit_mismatches,
            series_refused=self._refused(),
            last_success_timestamp_seconds=self._last_success,
            cycle_duration_seconds=duration,
            interval_seconds=self._config.interval_seconds,
        )


def _recommendation(
    key: LabelPairs,
    estimate: Estimate,
    target: float,
    allocated: float | None,
    resource: ServiceResource,
) -> Recommendation:
    """A series' bounds as exported, around the allocation its Sizer holds."""
    return Recommendation(
        labels=key,
        lower=exported(min(estimate.lower, target), resource),
        target=exported(target, resource),
        upper=exported(max(estimate.upper, target), resource),
        allocated=allocated,
    )
