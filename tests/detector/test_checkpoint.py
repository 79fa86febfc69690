from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from detector.checkpoint import FILE_NAME, Checkpoint
from detector.config import DetectorConfig, EntityConfig, ModelConfig, QueryConfig
from detector.engine import Engine
from detector.metrics import DetectorCollector
from detector.prometheus import Series

T0 = 1_700_000_007.0
STEP = 15.0
ROBUST = ModelConfig(kind="robust", window=50, min_points=10, threshold=6.0)


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeClient:
    """Serves every series of `labels` on the asked grid and records each call."""

    def __init__(self, *labels: dict[str, str]) -> None:
        self.labels = list(labels)
        self.calls: list[tuple[str, float, float]] = []

    def query_range(self, promql: str, start: float, end: float, step: float):
        self.calls.append((promql, start, end))
        grid = [start + i * step for i in range(int((end - start) / step) + 1)]
        return [
            Series(dict(labels), [(t, value(t, labels)) for t in grid])
            for labels in self.labels
        ]


def value(t: float, labels: dict[str, str]) -> float:
    # Deterministic wobble, a different level per series, so the MAD is not zero.
    return 50.0 + len(labels.get("gpu", "")) + math.sin(t / 15.0)


def config(state_dir: Path, *names: str, **overrides) -> DetectorConfig:
    queries = tuple(QueryConfig(name, f"{name}_q", STEP) for name in names or ("temp",))
    settings = {
        "queries": queries,
        "history_seconds": 600.0,
        "query_delay_seconds": 0.0,
        "model": ROBUST,
        "state_dir": str(state_dir),
        "checkpoint_interval_seconds": 3600.0,
    } | overrides
    return DetectorConfig(**settings)


def end_at(now: float) -> float:
    return math.floor(now / STEP) * STEP


def scored_then_saved(settings: DetectorConfig, client: FakeClient) -> Engine:
    engine = Engine(settings, client, clock=FakeClock())
    engine.run_cycle()
    engine.save_checkpoint()
    return engine


def test_restart_resumes_every_series_and_queries_only_the_gap(
    tmp_path: Path,
) -> None:
    settings = config(tmp_path)
    first = scored_then_saved(settings, FakeClient({"gpu": "0"}, {"gpu": "11"}))
    # The same engine, never stopped, scores the next stretch for comparison.
    later = FakeClock(T0 + 300.0)
    first._clock = later
    first.run_cycle()

    client = FakeClient({"gpu": "0"}, {"gpu": "11"})
    second = Engine(settings, client, clock=later)
    second.run_cycle()

    gap_start = end_at(T0) + STEP
    assert client.calls == [("temp_q", gap_start, end_at(T0 + 300.0))]
    assert second.checkpoint_status.series_restored == 2
    assert second.checkpoint_status.last_success_timestamp_seconds == T0
    assert second.snapshot.series == first.snapshot.series
    assert {s.points_seen for s in second.snapshot.series} == {41 + 20}
    assert all(s.score.warm for s in second.snapshot.series)


def test_a_restored_ensemble_is_warm_at_once(tmp_path: Path) -> None:
    # Long enough for the ensemble's SPOT to be initialised: ~1200 points.
    settings = config(
        tmp_path,
        history_seconds=1300 * STEP,
        model=ModelConfig(kind="ensemble", window=288, min_points=30),
    )
    first = scored_then_saved(settings, FakeClient({"gpu": "0"}))
    assert first.snapshot.series[0].score.warm

    client = FakeClient({"gpu": "0"})
    second = Engine(settings, client, clock=FakeClock(T0 + STEP))
    second.run_cycle()

    gap = end_at(T0) + STEP
    assert client.calls == [("temp_q", gap, gap)]
    (state,) = second.snapshot.series
    assert state.score.warm and state.points_seen == 1301 + 1


def test_written_at_the_interval_and_at_shutdown(tmp_path: Path) -> None:
    clock = FakeClock()
    stop = threading.Event()

    def sleep(seconds: float) -> None:
        stop.set()

    settings = config(tmp_path, checkpoint_interval_seconds=60.0)
    engine = Engine(settings, FakeClient({"gpu": "0"}), clock=clock, sleep=sleep)
    path = tmp_path / FILE_NAME

    engine.run_cycle()
    assert not path.exists()
    clock.now += 60.0
    engine.run_cycle()
    assert path.exists()
    status = engine.checkpoint_status
    assert status.last_success_timestamp_seconds == clock.now
    assert status.series_saved == 1 and status.size_bytes == path.stat().st_size

    # One more cycle in run(), then a stop before the interval is up: the
    # shutdown write holds that cycle too.
    clock.now += STEP
    engine.run(stop)
    client = FakeClient({"gpu": "0"})
    clock.now += STEP
    Engine(settings, client, clock=clock).run_cycle()

    assert client.calls == [("temp_q", end_at(T0 + 75.0) + STEP, end_at(clock.now))]


def restarted(settings: DetectorConfig, caplog: pytest.LogCaptureFixture) -> Engine:
    """A new engine on `settings` after one cycle; its log lines in `caplog`."""
    engine = Engine(settings, FakeClient({"gpu": "0"}), clock=FakeClock())
    engine.run_cycle()
    return engine


def learns_again(settings: DetectorConfig) -> tuple[Engine, FakeClient]:
    client = FakeClient({"gpu": "0"})
    engine = Engine(settings, client, clock=FakeClock(T0 + STEP))
    engine.run_cycle()
    # The whole history, as at a first start.
    assert client.calls == [("temp_q", end_at(T0 + STEP) - 600.0, end_at(T0 + STEP))]
    assert engine.checkpoint_status.series_restored == 0
    return engine, client


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda path: path.write_bytes(b"\x00" * 64), "not a detector state file"),
        (
            lambda path: path.write_bytes(path.read_bytes()[:-100]),
            "record 0 unreadable",
        ),
        (
            lambda path: path.write_bytes(
                path.read_bytes().replace(b'"format": 1', b'"format": 9')
            ),
            "format 9, this detector reads format 1",
        ),
        (lambda path: path.chmod(0o666), "writable by group or others"),
    ],
)
def test_an_unusable_file_is_named_once_and_every_series_learns_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage, reason: str
) -> None:
    settings = config(tmp_path)
    scored_then_saved(settings, FakeClient({"gpu": "0"}))
    path = tmp_path / FILE_NAME
    damage(path)

    with caplog.at_level(logging.WARNING, logger="detector"):
        engine, _ = learns_again(settings)

    (line,) = warnings(caplog)
    assert f"ignoring checkpoint path={path}" in line and reason in line
    assert engine.checkpoint_status.errors == {"read": 1, "write": 0}
    assert len(engine.snapshot.series) == 1


def test_a_file_of_another_user_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = config(tmp_path)
    scored_then_saved(settings, FakeClient({"gpu": "0"}))
    checkpoint = Checkpoint(
        tmp_path / FILE_NAME, settings, FakeClock(), owner=os.geteuid() + 1
    )
    engine = Engine(settings, FakeClient(), clock=FakeClock())

    with caplog.at_level(logging.WARNING, logger="detector"):
        restored = checkpoint.restore(engine._families, [], {}, lambda labels: True)

    assert restored == 0 and "not by this user" in caplog.text


def test_changed_model_settings_are_refused_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scored_then_saved(config(tmp_path), FakeClient({"gpu": "0"}))
    changed = config(tmp_path, model=dataclasses.replace(ROBUST, threshold=4.0))

    with caplog.at_level(logging.WARNING, logger="detector"):
        learns_again(changed)

    (line,) = warnings(caplog)
    assert "configuration changed for temp" in line


def test_only_the_queries_whose_settings_changed_learn_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scored_then_saved(config(tmp_path, "temp", "power"), FakeClient({"gpu": "0"}))
    queries = (
        QueryConfig("temp", "temp_q", STEP),
        QueryConfig("power", "sum(power_q)", STEP),
    )
    client = FakeClient({"gpu": "0"})

    with caplog.at_level(logging.WARNING, logger="detector"):
        engine = Engine(config(tmp_path, queries=queries), client, clock=FakeClock())

    assert "checkpoint partly ignored" in caplog.text and "changed=power" in caplog.text
    assert engine.checkpoint_status.series_restored == 1
    engine.run_cycle()
    end = end_at(T0)
    # temp has nothing new to ask; power starts over from its history.
    assert client.calls == [("sum(power_q)", end - 600.0, end)]


def test_a_query_given_its_own_model_learns_again_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scored_then_saved(config(tmp_path, "temp", "power"), FakeClient({"gpu": "0"}))
    own = dataclasses.replace(ROBUST, threshold=4.0)
    queries = (
        QueryConfig("temp", "temp_q", STEP),
        QueryConfig("power", "power_q", STEP, model=own),
    )
    client = FakeClient({"gpu": "0"})

    with caplog.at_level(logging.WARNING, logger="detector"):
        engine = Engine(config(tmp_path, queries=queries), client, clock=FakeClock())

    assert "changed=power" in caplog.text
    assert engine.checkpoint_status.series_restored == 1
    engine.run_cycle()
    end = end_at(T0)
    assert client.calls == [("power_q", end - 600.0, end)]


def test_an_override_equal_to_the_global_model_keeps_the_saved_series(
    tmp_path: Path,
) -> None:
    scored_then_saved(config(tmp_path, "temp", "power"), FakeClient({"gpu": "0"}))
    queries = (
        QueryConfig("temp", "temp_q", STEP),
        QueryConfig("power", "power_q", STEP, model=ROBUST),
    )

    engine = Engine(config(tmp_path, queries=queries), FakeClient(), clock=FakeClock())

    assert engine.checkpoint_status.series_restored == 2


def test_restores_the_newest_series_up_to_max_series(tmp_path: Path) -> None:
    class Staggered(FakeClient):
        # gpu "0" falls silent one step before the others.
        def query_range(self, promql, start, end, step):
            return [
                Series(s.labels, s.points[:-1] if s.labels["gpu"] == "0" else s.points)
                for s in super().query_range(promql, start, end, step)
            ]

    scored_then_saved(config(tmp_path), Staggered({"gpu": "0"}, {"gpu": "11"}))
    engine = Engine(config(tmp_path, max_series=1), FakeClient(), clock=FakeClock())

    assert engine.checkpoint_status.series_restored == 1
    assert list(engine._families["temp"].tracks) == [(("gpu", "11"),)]


def test_series_of_other_shards_or_long_silent_are_not_restored(
    tmp_path: Path,
) -> None:
    scored_then_saved(config(tmp_path), FakeClient({"gpu": "0"}, {"gpu": "1"}))

    sharded = Engine(config(tmp_path, shard="1/2"), FakeClient(), clock=FakeClock())
    later = Engine(config(tmp_path), FakeClient(), clock=FakeClock(T0 + 601.0))

    # gpu 1 hashes to shard 1 of 2, gpu 0 to shard 0.
    assert sharded.checkpoint_status.series_restored == 1
    # Silent for longer than history_seconds: a running engine forgets it too.
    assert later.checkpoint_status.series_restored == 0


def test_entities_resume_with_their_series(tmp_path: Path) -> None:
    entity = EntityConfig("gpu", ("temp", "power"), ("gpu",), min_points=10)
    settings = config(tmp_path, "temp", "power", entities=(entity,))
    first = scored_then_saved(settings, FakeClient({"gpu": "0"}))
    saved = first._groups[0].entities[("0",)]

    second = Engine(settings, FakeClient({"gpu": "0"}), clock=FakeClock())

    restored = second._groups[0].entities[("0",)]
    assert restored.last_timestamp == saved.last_timestamp
    assert (restored.history == saved.history).all()


def test_a_failed_write_is_counted_and_the_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A directory where the file belongs: the final rename cannot succeed.
    (tmp_path / FILE_NAME).mkdir()
    engine = Engine(config(tmp_path), FakeClient({"gpu": "0"}), clock=FakeClock())
    engine.run_cycle()

    with caplog.at_level(logging.WARNING, logger="detector"):
        engine.save_checkpoint()

    assert engine.checkpoint_status.errors == {"read": 1, "write": 1}
    assert engine.checkpoint_status.last_success_timestamp_seconds == 0.0
    assert "cannot write checkpoint" in caplog.text
    assert engine.run_cycle() is True


def test_checkpoint_metrics_are_exported(tmp_path: Path) -> None:
    scored_then_saved(config(tmp_path), FakeClient({"gpu": "0"}))
    engine = Engine(config(tmp_path), FakeClient({"gpu": "0"}), clock=FakeClock())
    engine.run_cycle()
    engine.save_checkpoint()
    registry = CollectorRegistry()
    registry.register(
        DetectorCollector(lambda: engine.snapshot, lambda: engine.checkpoint_status)
    )

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("aiops_detector_series_restored") == 1.0
    assert sample("aiops_detector_series_warm") == 1.0
    assert sample("aiops_detector_checkpoint_series") == 1.0
    assert sample("aiops_detector_checkpoint_last_success_timestamp_seconds") == T0
    assert sample("aiops_detector_checkpoint_size_bytes") == (
        (tmp_path / FILE_NAME).stat().st_size
    )
    assert sample("aiops_detector_checkpoint_errors_total", stage="read") == 0.0
    assert sample("aiops_detector_checkpoint_errors_total", stage="write") == 0.0


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings logged, whatever level an earlier test left the root at."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
