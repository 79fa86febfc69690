from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from detector.forecaster import Forecaster, ForecasterError

SEED = 20240611
CONTEXT = 24


def waves(count: int, n: int = 600) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED)
    t = np.arange(n)
    levels, phases = rng.uniform(10, 1000, count), rng.uniform(0, 6, count)
    return [
        level + 5.0 * np.sin(2 * np.pi * t / 40 + phase) + rng.normal(0, 0.1, n)
        for level, phase in zip(levels, phases, strict=True)
    ]


def trained() -> Forecaster:
    model = Forecaster(CONTEXT, channels=8)
    model.fit(waves(4), samples=2048, epochs=6)
    return model


def test_one_model_forecasts_series_of_any_level() -> None:
    model = trained()
    (series,) = waves(1, 300)
    windows = sliding_window_view(series[:-1], CONTEXT)

    predicted = model.predict(windows)

    error = np.abs(predicted - series[CONTEXT:])
    assert np.median(error) < 1.0  # the wave swings by 10
    assert model.trained


def test_training_is_deterministic() -> None:
    (series,) = waves(1, 100)
    window = series[None, :CONTEXT]

    assert trained().predict(window) == pytest.approx(trained().predict(window))


def test_saved_weights_and_normalization_load_back(tmp_path: Path) -> None:
    model = trained()
    (series,) = waves(1, 100)
    path = tmp_path / "fam" / "forecaster.pt"

    model.save(path)
    loaded = Forecaster.load(path, CONTEXT, 8)

    window = series[None, :CONTEXT]
    assert loaded.predict(window) == pytest.approx(model.predict(window))


def test_a_model_of_another_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "forecaster.pt"
    trained().save(path)

    with pytest.raises(ForecasterError, match="configured"):
        Forecaster.load(path, CONTEXT, 16)


def test_too_little_history_is_an_error() -> None:
    with pytest.raises(ForecasterError, match="too little history"):
        Forecaster(CONTEXT, 8).fit([np.arange(30.0)], 100, 1)
