"""The engine with the full suite: ensemble models, shared models, shards."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from detector.config import (
    DetectorConfig,
    EnsembleConfig,
    EntityConfig,
    ForecasterConfig,
    ModelConfig,
    QueryConfig,
)
from detector.engine import Engine
from detector.family import FORECASTER_FILE
from detector.training import InlineExecutor, Schedule
from tests.detector.test_engine import FakeClient, FakeClock

STEP = 300.0
DAY = 86400.0
T0 = 1_700_000_100.0


def wave(seed: int):
    noise = np.random.default_rng(seed).normal(0.0, 1.0, 100_000)

    def value_at(t: float) -> float:
        return (
            50.0
            + 10.0 * math.sin(2 * math.pi * t / DAY)
            + noise[int(t / STEP) % 100_000]
        )

    return value_at


def suite(queries, **overrides) -> DetectorConfig:
    settings = {
        "queries": tuple(QueryConfig(q, f"{q}_q", step_seconds=STEP) for q in queries),
        "interval_seconds": STEP,
        "query_delay_seconds": 0.0,
        "history_seconds": 10 * DAY,
    } | overrides
    return DetectorConfig(**settings)


def engine(config: DetectorConfig, client: FakeClient, clock: FakeClock) -> Engine:
    return Engine(config, client, clock=clock, executor=InlineExecutor())


def test_the_ensemble_scores_series_and_reports_warm_up() -> None:
    clock = FakeClock(T0)
    client = FakeClient({"temp_q": [({"gpu": "0"}, wave(1))]})
    e = engine(suite(["temp"]), client, clock)

    e.run_cycle()

    (state,) = e.snapshot.series
    assert state.points_seen == e.snapshot.points_scored_total == 2881
    assert state.score.warm
    assert 0.0 <= state.score.score < 0.5
    assert state.score.lower < state.score.expected < state.score.upper


def test_a_shard_scores_only_its_series_and_counts_the_others() -> None:
    series = [({"gpu": str(i)}, lambda t: 1.0) for i in range(40)]
    config = suite(["temp"], shard="1/3", model=ModelConfig(kind="robust"))
    e = engine(config, FakeClient({"temp_q": series}), FakeClock(T0))

    e.run_cycle()

    tracked = e.snapshot.series_tracked
    assert 0 < tracked < 40
    assert tracked + e.snapshot.series_other_shards == 40
    assert (e.snapshot.shard_index, e.snapshot.shard_count) == (1, 3)


def forecasting(state_dir: Path) -> DetectorConfig:
    forecaster = ForecasterConfig(
        enabled=True, context_points=24, channels=4, epochs=1, samples=512
    )
    return suite(
        ["temp"],
        state_dir=str(state_dir),
        model=ModelConfig(ensemble=EnsembleConfig(forecaster=forecaster)),
    )


def test_a_trained_forecaster_is_saved_and_reloaded(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    client = FakeClient({"temp_q": [({"gpu": "0"}, wave(2))]})
    first = engine(forecasting(tmp_path), client, clock)

    first.run_cycle()

    assert (tmp_path / "temp" / FORECASTER_FILE).is_file()
    (family,) = first.snapshot.families
    trained_at = family.trained_timestamp
    assert (family.family, family.model, family.training_failures) == (
        "temp",
        "forecaster",
        0,
    )
    assert trained_at == math.floor(T0 / STEP) * STEP

    # A restart finds the model and its date, and keeps to the schedule.
    clock.now += STEP
    second = engine(forecasting(tmp_path), client, clock)
    assert second._families["temp"].forecaster_ready
    second.run_cycle()
    assert second.snapshot.families[0].trained_timestamp == trained_at


def test_a_failed_fit_keeps_the_old_model_and_is_counted() -> None:
    schedule = Schedule(60.0)
    adopted = []

    def fail() -> object:
        raise RuntimeError("diverged")

    schedule.start(InlineExecutor(), 100.0, fail, adopted.append, "temp")

    assert adopted == []
    assert schedule.failures == 1
    assert schedule.last_trained is None
    assert not schedule.due(130.0)
    assert schedule.due(160.0)


def gpu_series(broken_after: float):
    """Utilization and power of one GPU move together, until power decouples."""
    load = wave(3)

    def utilization(t: float) -> float:
        return load(t)

    def power(t: float) -> float:
        if t > broken_after:
            return 200.0 - 3.0 * load(t)
        return 3.0 * load(t) + 0.0 * t

    return utilization, power


def test_an_entity_whose_members_stop_agreeing_is_decided() -> None:
    clock = FakeClock(T0)
    broken_after = T0 + 4 * DAY
    utilization, power = gpu_series(broken_after)
    labels = {"instance": "node-1", "gpu": "0", "job": "train"}
    client = FakeClient(
        {"util_q": [(labels, utilization)], "power_q": [(labels, power)]}
    )
    config = suite(
        ["util", "power"],
        entities=(EntityConfig("gpu", ("util", "power"), ("instance", "gpu")),),
    )
    seen: list[tuple[str, dict, float, int]] = []
    e = Engine(
        config,
        client,
        clock=clock,
        executor=InlineExecutor(),
        observer=lambda q, lab, ts, sc: seen.extend(
            (q, lab, t, s.decision) for t, s in zip(ts, sc, strict=True)
        ),
    )

    e.run_cycle()
    clock.now += 4 * DAY + 6 * STEP
    e.run_cycle()

    entity = [(lab, t, d) for q, lab, t, d in seen if q == "gpu"]
    assert entity and all(
        lab == {"instance": "node-1", "gpu": "0"} for lab, _, _ in entity
    )
    decided = [t for _, t, d in entity if d]
    assert decided and min(decided) > broken_after
    exported = {s.query: s for s in e.snapshot.series}
    assert exported["gpu"].score.decision == 1
    assert dict(exported["gpu"].labels) == {"instance": "node-1", "gpu": "0"}


def test_entities_need_their_join_labels_in_every_shard() -> None:
    with pytest.raises(ValueError, match="shard_by"):
        suite(
            ["util", "power"],
            shard="0/2",
            entities=(EntityConfig("gpu", ("util", "power"), ("instance", "gpu")),),
        )


class LastValue:
    """A stand-in forecaster: the next point is the last one seen."""

    context = 4

    def predict(self, windows: np.ndarray) -> np.ndarray:
        return windows[:, -1]


def test_each_point_is_forecast_from_the_points_before_it() -> None:
    from detector.family import Batch, Family

    family = Family(
        QueryConfig("temp", "temp_q"),
        ModelConfig(kind="robust"),
        InlineExecutor(),
        None,
    )
    family._forecaster = LastValue()  # type: ignore[assignment]
    track = family.new_track((("gpu", "0"),))
    track.model.update(np.array([1.0, 2.0, 3.0]))

    forecasts = family._forecast(
        [Batch(track, np.arange(3.0), np.array([4.0, 5.0, 6.0]))]
    )

    # Point 4.0 has only three points before it, fewer than the context.
    np.testing.assert_array_equal(forecasts[0], [np.nan, 4.0, 5.0])
