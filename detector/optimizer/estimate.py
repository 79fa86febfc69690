"""What a sizing policy answers and what it may read of a series."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from detector.optimizer.history import History
from detector.optimizer.resources import ResourceSpec


@dataclass(frozen=True)
class Estimate:
    """Three sizes in the resource's unit, as the VPA gives three.

    Below `lower` the series would be short often; `target` is the
    recommendation; above `upper` an allocation is waste.
    """

    lower: float
    target: float
    upper: float


class SeriesView(Protocol):
    """A series as a policy sees it at a decision: only data strictly before now."""

    @property
    def spec(self) -> ResourceSpec: ...

    @property
    def history(self) -> History: ...

    @property
    def allocation(self) -> float | None: ...

    @property
    def last_change(self) -> float: ...

    @property
    def violations_since_decision(self) -> int: ...

    @property
    def violation_peak(self) -> float: ...

    @property
    def oom_floor(self) -> float: ...

    @property
    def react_margin(self) -> float:
        """The room a raise after a short reading leaves; 0 without reactions."""
        ...


class Estimator(Protocol):
    """One series' sizing state under one policy."""

    def observe(self, timestamp: float, value: float, allocation: float | None) -> None:
        """Take a reading and the allocation it was made under (None: none yet)."""

    def estimate(self, view: SeriesView, now: float) -> Estimate:
        """The sizes to hold from `now`; reads only what came before `now`."""


class Policy(Protocol):
    """Makes one Estimator per series and hears the clock move."""

    name: str

    def estimator(self, spec: ResourceSpec, key: str) -> Estimator: ...

    def advance(self, now: float) -> None:
        """Everything before `now` has been observed; learners may use it."""
