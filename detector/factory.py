"""Builds the model of one series from its query's model section (`kind`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from detector.config import ModelConfig
from detector.ensemble import EnsembleModel
from detector.model import RobustModel, Score


class SeriesModel(Protocol):
    """What the engine and the backtest need from a model of one series."""

    @property
    def points_seen(self) -> int: ...

    @property
    def warm(self) -> bool: ...

    def recent(self, count: int) -> np.ndarray: ...

    def history(self) -> np.ndarray: ...

    def update(
        self,
        values: Sequence[float] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray | None = None,
        forecasts: np.ndarray | None = None,
    ) -> list[Score]: ...


def make_model(config: ModelConfig, step_seconds: float) -> SeriesModel:
    if config.kind == "robust":
        return RobustModel(config.window, config.min_points, config.threshold)
    return EnsembleModel(config, step_seconds)


def uses_forecaster(config: ModelConfig) -> bool:
    return config.kind == "ensemble" and config.ensemble.forecaster.enabled
