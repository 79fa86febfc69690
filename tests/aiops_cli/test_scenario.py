from pathlib import Path

import numpy as np
import pytest
import yaml

from aiops_cli.datasets import LabelledSeries
from aiops_cli.replay import ReplayTrack
from aiops_cli.scenario import (
    ENSEMBLE_WARMUP_POINTS,
    HOST_CPU_QUERY,
    TEMPERATURE_QUERY,
    detector_models,
)
from aiops_cli.stack import Stack, StackError
from aiops_common.config import from_mapping
from detector.config import DetectorConfig, ModelConfig
from detector.ensemble import EnsembleModel


def make_track(query: str, history_rows: int, step_ms: int = 100) -> ReplayTrack:
    rows = history_rows + 50
    series = LabelledSeries(query, tuple(range(rows)), (0.0,) * rows, ())
    return ReplayTrack(
        series,
        "m",
        {},
        query,
        live_from=history_rows,
        live_to=rows,
        step_ms=step_ms,
        history_rows=history_rows,
    )


def test_the_warm_up_constant_is_the_ensembles_own() -> None:
    rng = np.random.default_rng(7)
    points = ENSEMBLE_WARMUP_POINTS + 1
    values = 50 + np.sin(np.arange(points) / 10) + rng.normal(0, 0.1, points)

    scores = EnsembleModel(ModelConfig(), 15.0).update(values)

    assert not scores[-2].warm
    assert scores[-1].warm


def test_robust_where_the_ensemble_could_not_decide_yet() -> None:
    tracks = [
        make_track("long", ENSEMBLE_WARMUP_POINTS),
        make_track("short", ENSEMBLE_WARMUP_POINTS - 1),
        # Backfilled, but further back than the detector's first query reads.
        make_track("far", 2 * ENSEMBLE_WARMUP_POINTS, step_ms=1000),
    ]

    models = detector_models(tracks, history_seconds=ENSEMBLE_WARMUP_POINTS * 0.1)

    assert set(models) == {HOST_CPU_QUERY, TEMPERATURE_QUERY, "short", "far"}
    assert all(m == {"kind": "robust"} for m in models.values())


def detector_config(stack: Stack) -> DetectorConfig:
    stack.ports = {"prometheus": 9090}
    # Through YAML, as the service reads it.
    raw = yaml.safe_load(yaml.safe_dump(stack._detector_config()))
    return from_mapping(DetectorConfig, raw)


def test_the_stack_sets_query_models_and_keeps_the_deployed_default(
    tmp_path: Path,
) -> None:
    stack = Stack(
        run_dir=tmp_path,
        detector_queries=[{"name": "replay", "promql": "m", "step_seconds": 0.1}],
        detector_query_models={
            HOST_CPU_QUERY: {"kind": "robust"},
            "replay": {"kind": "robust", "min_points": 5},
        },
    )

    config = detector_config(stack)

    kinds = {q.name: config.model_for(q).kind for q in config.queries}
    assert kinds == {
        HOST_CPU_QUERY: "robust",
        "gpu_utilization": "ensemble",
        "replay": "robust",
    }
    assert config.model_for(config.queries[-1]).min_points == 5
    assert "model" not in stack.detector_queries[0]


def test_a_query_model_for_no_query_is_refused(tmp_path: Path) -> None:
    stack = Stack(run_dir=tmp_path, detector_query_models={"nope": {}})

    with pytest.raises(StackError, match="'nope'"):
        detector_config(stack)


class Component:
    """A started component as stop() sees it; notes what happened to it."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name, self.events, self.running = name, events, True

    def poll(self) -> int | None:
        return None if self.running else 0

    def send_signal(self, signum: int) -> None:
        self.events.append(f"term {self.name}")

    def wait(self, timeout: float | None = None) -> int:
        self.running = False
        self.events.append(f"gone {self.name}")
        return 0


def test_components_stop_last_started_first_each_before_the_next(
    tmp_path: Path,
) -> None:
    # Stopped all at once, the detector queried a Prometheus shutting down.
    events: list[str] = []
    stack = Stack(run_dir=tmp_path)
    for name in ("prometheus", "webhook", "detector"):
        stack.processes[name] = Component(name, events)  # type: ignore[assignment]

    stack.stop()

    assert events == [
        "term detector",
        "gone detector",
        "term webhook",
        "gone webhook",
        "term prometheus",
        "gone prometheus",
    ]
    assert stack.processes == {}
