"""What one resource's settled periods say fleet-wide, for the learning policy.

The protocol pools slack over every series: a ratio of sums, where a large
series weighs more. A period's cost is therefore linearised around the pooled
slack share of the choices made so far, and a series' slack is weighed by its
size against the fleet's mean allocation.
"""

from __future__ import annotations

import numpy as np

from detector.optimizer.outcome import Outcome


class FleetCosts:
    """Each arm's mean cost per reading, and the pooled share of the choices."""

    def __init__(self, n_arms: int, default: int, weight: float) -> None:
        # A short reading weighs this many slack points per 100 readings.
        self.weight = weight
        self._default = default
        self._cost = np.zeros(n_arms)
        self._cost_readings = 0.0
        self._slack = 0.0
        self._allocated = 0.0
        self._readings = 0

    @property
    def sized(self) -> bool:
        """Whether any choice has settled, so that the mean allocation is known."""
        return self._allocated > 0

    def pooled(self) -> tuple[float, float]:
        """The pooled slack share and the mean allocation of the choices so far."""
        if self._allocated <= 0:
            return 0.5, 1.0
        return self._slack / self._allocated, self._allocated / max(self._readings, 1)

    def per_reading(
        self,
        slack: np.ndarray,
        allocated: np.ndarray,
        violated: np.ndarray,
        readings: float,
        reference: float,
    ) -> np.ndarray:
        """Each arm's cost per reading, from sums over the reference size.

        Pooled slack S/A moves by (dS - s dA) / A when one period changes, so a
        period adds 100 (S - s A) / a_mean + 100 w V over its readings.
        """
        share, mean = self.pooled()
        return (
            100.0 * (slack - share * allocated) * reference / mean
            + 100.0 * self.weight * violated
        ) / readings

    def of(self, outcome: Outcome) -> np.ndarray:
        """Each arm's cost per reading over one settled period."""
        return self.per_reading(
            outcome.slack,
            outcome.allocated,
            outcome.violated,
            outcome.readings,
            outcome.reference,
        )

    def average(self) -> np.ndarray:
        """Each arm's mean cost per reading over every settled period."""
        if self._cost_readings == 0:
            # Before any outcome: the long-horizon peak with a small margin.
            prior = np.ones(self._cost.size)
            prior[self._default] = 0.0
            return prior
        return self._cost / self._cost_readings

    def add(self, outcome: Outcome, chosen: int) -> None:
        """Count one settled period, in which arm `chosen` was played."""
        ref = outcome.reference
        self._slack += float(outcome.slack[chosen]) * ref
        self._allocated += float(outcome.allocated[chosen]) * ref
        self._readings += outcome.readings
        self._cost += self.of(outcome) * outcome.readings
        self._cost_readings += outcome.readings
