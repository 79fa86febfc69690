from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

import pytest

from detector.config import DetectorConfig, ModelConfig, QueryConfig
from detector.engine import Engine
from detector.ensemble import EnsembleModel
from detector.model import RobustModel
from detector.prometheus import (
    BadResponse,
    PrometheusHTTPError,
    PrometheusUnreachable,
    QueryTimeout,
    Series,
)

T0 = 1_700_000_007.0
ValueAt = Callable[[float], float | None]


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeClient:
    """Serves `series` per PromQL on the asked grid, after any queued failures."""

    def __init__(self, series: dict[str, list[tuple[dict[str, str], ValueAt]]]):
        self.series = series
        self.failures: dict[str, list[Exception]] = {}
        self.calls: list[tuple[str, float, float, float]] = []

    def query_range(self, promql: str, start: float, end: float, step: float):
        self.calls.append((promql, start, end, step))
        queued = self.failures.get(promql)
        if queued:
            raise queued.pop(0)

        grid = [start + i * step for i in range(int((end - start) / step) + 1)]
        result = []
        for labels, value_at in self.series.get(promql, []):
            points = [(t, v) for t in grid if (v := value_at(t)) is not None]
            result.append(Series(dict(labels), points))
        return result


def config(*names: str, **overrides) -> DetectorConfig:
    queries = tuple(QueryConfig(name, f"{name}_q") for name in names or ("temp",))
    settings = {
        "queries": queries,
        "history_seconds": 600.0,
        "model": ModelConfig(kind="robust", window=50, min_points=10, threshold=6.0),
    } | overrides
    return DetectorConfig(**settings)


def steady(t: float) -> float:
    # Deterministic wobble, so that the MAD is not zero.
    return 50.0 + math.sin(t / 15.0)


def test_first_cycle_reads_history_then_only_new_steps() -> None:
    clock = FakeClock()
    client = FakeClient({"temp_q": [({"gpu": "0"}, steady)]})
    engine = Engine(config(), client, clock=clock)

    engine.run_cycle()
    clock.now += 15.0
    engine.run_cycle()
    clock.now += 1.0
    engine.run_cycle()

    first_end = math.floor((T0 - 30.0) / 15.0) * 15.0
    assert client.calls == [
        ("temp_q", first_end - 600.0, first_end, 15.0),
        ("temp_q", first_end + 15.0, first_end + 15.0, 15.0),
    ]
    assert engine.snapshot.points_scored_total == 41 + 1
    (state,) = engine.snapshot.series
    assert state.timestamp == first_end + 15.0
    assert state.score.value == steady(first_end + 15.0)


def test_points_already_scored_are_not_scored_again() -> None:
    class Overlapping(FakeClient):
        # Answers from well before `start`, as a sloppy proxy might.
        def query_range(self, promql, start, end, step):
            return super().query_range(promql, start - 300.0, end, step)

    clock = FakeClock()
    engine = Engine(config(), Overlapping({"temp_q": [({}, steady)]}), clock=clock)

    engine.run_cycle()
    clock.now += 30.0
    engine.run_cycle()

    assert engine.snapshot.points_scored_total == 41 + 20 + 2


def test_backoff_while_prometheus_is_away_then_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    client = FakeClient({"temp_q": [({"gpu": "0"}, steady)]})
    client.failures["temp_q"] = [PrometheusUnreachable("refused")] * 4
    stop = threading.Event()
    delays: list[float] = []
    up: list[bool] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        up.append(engine.snapshot.prometheus_up)
        clock.now += seconds
        if len(delays) == 7:
            stop.set()

    engine = Engine(config(), client, clock=clock, sleep=sleep)
    with caplog.at_level(logging.INFO, logger="detector.health"):
        engine.run(stop)

    assert delays == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert up == [False] * 4 + [True] * 3
    assert engine.snapshot.query_errors == {"temp": 4}
    messages = [r.getMessage() for r in caplog.records]
    assert sum("prometheus unavailable" in m for m in messages) == 1
    assert sum("prometheus reachable" in m for m in messages) == 1
    assert len(engine.snapshot.series) == 1


def test_backoff_is_capped() -> None:
    clock = FakeClock()
    client = FakeClient({})
    client.failures["temp_q"] = [PrometheusHTTPError(503, "unavailable")] * 12
    stop = threading.Event()
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 10:
            stop.set()

    Engine(config(), client, clock=clock, sleep=sleep).run(stop)

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0]


def test_unreachable_skips_the_remaining_queries() -> None:
    client = FakeClient({"b_q": [({}, steady)]})
    client.failures["a_q"] = [PrometheusUnreachable("refused")]
    engine = Engine(config("a", "b"), client, clock=FakeClock())

    assert engine.run_cycle() is False

    assert [call[0] for call in client.calls] == ["a_q"]
    assert engine.snapshot.prometheus_up is False


@pytest.mark.parametrize(
    "error",
    [
        PrometheusHTTPError(400, "parse error"),
        BadResponse("not json"),
        RuntimeError("a bug"),
        PrometheusHTTPError(503, "overloaded"),
        QueryTimeout("slow"),
    ],
)
def test_one_failing_query_does_not_stop_the_others(error: Exception) -> None:
    client = FakeClient({"b_q": [({"gpu": "1"}, steady)]})
    client.failures["a_q"] = [error]
    engine = Engine(config("a", "b"), client, clock=FakeClock())

    # Prometheus answered the other query, so it is up whatever "a" hit.
    assert engine.run_cycle() is True

    assert engine.snapshot.query_errors == {"a": 1, "b": 0}
    assert [s.query for s in engine.snapshot.series] == ["b"]
    assert engine.snapshot.last_success_timestamp_seconds == 0.0


def test_server_errors_on_every_query_mean_prometheus_is_down() -> None:
    client = FakeClient({})
    client.failures["a_q"] = [PrometheusHTTPError(500, "internal")]
    client.failures["b_q"] = [QueryTimeout("slow")]
    engine = Engine(config("a", "b"), client, clock=FakeClock())

    assert engine.run_cycle() is False
    assert engine.snapshot.prometheus_up is False


def test_last_success_is_the_end_of_a_clean_cycle() -> None:
    clock = FakeClock()
    engine = Engine(config(), FakeClient({"temp_q": [({}, steady)]}), clock=clock)

    engine.run_cycle()

    assert engine.snapshot.last_success_timestamp_seconds == T0
    assert engine.snapshot.prometheus_up is True


def test_series_over_the_cap_are_dropped_and_counted() -> None:
    series = [({"gpu": str(i)}, steady) for i in range(3)]
    clock = FakeClock()
    engine = Engine(config(max_series=2), FakeClient({"temp_q": series}), clock=clock)

    engine.run_cycle()
    clock.now += 15.0
    engine.run_cycle()

    assert engine.snapshot.series_tracked == 2
    assert engine.snapshot.series_dropped_total == 2
    assert {dict(s.labels)["gpu"] for s in engine.snapshot.series} == {"0", "1"}


def test_vanished_series_leave_the_export_then_are_forgotten() -> None:
    clock = FakeClock()
    gone_after = T0 - 30.0

    def vanishing(t: float) -> float | None:
        return steady(t) if t <= gone_after else None

    client = FakeClient({"temp_q": [({"gpu": "0"}, steady), ({"gpu": "1"}, vanishing)]})
    engine = Engine(config(), client, clock=clock)
    engine.run_cycle()
    assert engine.snapshot.series_tracked == 2

    clock.now += 315.0
    engine.run_cycle()
    assert engine.snapshot.series_tracked == 2
    assert [dict(s.labels) for s in engine.snapshot.series] == [{"gpu": "0"}]

    clock.now += 300.0
    engine.run_cycle()
    assert engine.snapshot.series_tracked == 1


def test_the_observer_sees_every_scored_point() -> None:
    seen: list[tuple[str, dict[str, str], float, int]] = []

    def observer(query, labels, timestamps, scores):
        seen.extend(
            (query, labels, t, s.decision)
            for t, s in zip(timestamps, scores, strict=True)
        )

    engine = Engine(
        config(),
        FakeClient({"temp_q": [({"gpu": "0"}, steady)]}),
        clock=FakeClock(),
        observer=observer,
    )
    engine.run_cycle()

    assert len(seen) == engine.snapshot.points_scored_total == 41
    assert [t for _, _, t, _ in seen] == sorted(t for _, _, t, _ in seen)
    assert {(q, tuple(labels.items())) for q, labels, _, _ in seen} == {
        ("temp", (("gpu", "0"),))
    }


def test_configured_queries_start_with_zero_errors() -> None:
    engine = Engine(config("a", "b"), FakeClient({}), clock=FakeClock())

    assert engine.snapshot.query_errors == {"a": 0, "b": 0}
    assert engine.snapshot.prometheus_up is False


def test_a_failing_query_is_logged_once_then_once_on_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    client = FakeClient({"temp_q": [({}, steady)]})
    client.failures["temp_q"] = [PrometheusHTTPError(422, "bad")] * 3
    engine = Engine(config(), client, clock=clock)

    with caplog.at_level(logging.INFO, logger="detector.health"):
        for _ in range(5):
            engine.run_cycle()
            clock.now += 15.0

    messages = [r.getMessage() for r in caplog.records]
    assert sum("query failing query=temp" in m for m in messages) == 1
    assert sum("query recovered query=temp" in m for m in messages) == 1
    assert engine.snapshot.query_errors == {"temp": 3}


def test_a_cycle_of_fine_steps_exports_its_anomalous_point_not_the_last() -> None:
    # Steps of 1 s read every 15 s: a spike between two cycles must still show.
    spike_at = T0 - 30.0 - 7.0
    clock = FakeClock(T0 - 15.0)

    def spiky(t: float) -> float:
        return steady(t) + (500.0 if abs(t - spike_at) < 0.5 else 0.0)

    client = FakeClient({"temp_q": [({"gpu": "0"}, spiky)]})
    engine = Engine(
        config(queries=(QueryConfig("temp", "temp_q", step_seconds=1.0),)),
        client,
        clock=clock,
    )

    engine.run_cycle()
    assert [s.score.decision for s in engine.snapshot.series] == [0]
    clock.now = T0
    engine.run_cycle()

    (state,) = engine.snapshot.series
    assert state.score.decision == 1
    assert state.score.value == pytest.approx(spiky(spike_at))


def test_anomalies_in_the_warm_up_history_are_not_exported() -> None:
    spike_at = T0 - 300.0

    def spiky(t: float) -> float:
        return steady(t) + (500.0 if abs(t - spike_at) < 0.5 else 0.0)

    client = FakeClient({"temp_q": [({"gpu": "0"}, spiky)]})
    engine = Engine(
        config(queries=(QueryConfig("temp", "temp_q", step_seconds=1.0),)),
        client,
        clock=FakeClock(),
    )

    engine.run_cycle()

    (state,) = engine.snapshot.series
    assert engine.snapshot.points_scored_total > 500
    assert state.score.decision == 0


def test_a_query_model_applies_to_its_series_and_the_global_one_to_others() -> None:
    queries = (
        QueryConfig("temp", "temp_q"),
        QueryConfig("cpu", "cpu_q", model=ModelConfig(kind="robust", min_points=10)),
    )
    client = FakeClient(
        {"temp_q": [({"gpu": "0"}, steady)], "cpu_q": [({"host": "a"}, steady)]}
    )
    engine = Engine(
        config(queries=queries, model=ModelConfig(kind="ensemble")),
        client,
        clock=FakeClock(),
    )

    engine.run_cycle()

    # 41 points of history: past the robust model's 10, far short of the
    # ensemble's warm-up.
    warm = {s.query: s.score.warm for s in engine.snapshot.series}
    assert {s.points_seen for s in engine.snapshot.series} == {41}
    assert warm == {"temp": False, "cpu": True}
    kinds = {
        name: {type(t.model) for t in family.tracks.values()}
        for name, family in engine._families.items()
    }
    assert kinds == {"temp": {EnsembleModel}, "cpu": {RobustModel}}


def test_work_after_each_cycle_sees_the_new_snapshot_and_cannot_stop_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    client = FakeClient({"temp_q": [({"gpu": "0"}, steady)]})
    stop = threading.Event()
    seen: list[int] = []

    def after_cycle() -> None:
        seen.append(len(engine.snapshot.series))
        if len(seen) == 1:
            raise RuntimeError("diagnosis broke")

    def sleep(seconds: float) -> None:
        clock.now += seconds
        if len(seen) == 3:
            stop.set()

    engine = Engine(config(), client, clock=clock, sleep=sleep, after_cycle=after_cycle)
    with caplog.at_level(logging.ERROR, logger="detector.engine"):
        engine.run(stop)

    assert seen == [1, 1, 1]
    assert any(
        "after the detector cycle failed" in r.getMessage() for r in caplog.records
    )
