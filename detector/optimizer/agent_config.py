"""The learning policy's configuration, one for all resources: arms, costs, learning."""

from __future__ import annotations

from dataclasses import dataclass, field

from detector.optimizer.arms import ArmGrid


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
