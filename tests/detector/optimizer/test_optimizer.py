from __future__ import annotations

import math

import numpy as np
import pytest
import requests

from detector.optimizer.config import OptimizerConfig, PowerConfig, ResourceQuery
from detector.optimizer.optimizer import Optimizer
from detector.optimizer.resources import HOUR
from detector.prometheus import (
    PrometheusClient,
    PrometheusHTTPError,
    PrometheusUnreachable,
    QueryTimeout,
    Series,
    merge_series,
)
from tests.detector.fakeprom import FakePrometheus, Reply, error_reply

START = 1_700_000_000.0
HOST = {"instance": "h1", "user": "u"}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class FakeQueries:
    """Answers range queries from functions of time, per PromQL substring, or
    raises the error set for a substring ("" for every query)."""

    def __init__(self) -> None:
        self.series: dict[str, list[tuple[dict[str, str], object]]] = {}
        self.calls: list[tuple[str, float, float, float]] = []
        self.failing: dict[str, Exception] = {}

    def __call__(self, promql: str, start: float, end: float, step: float):
        self.calls.append((promql, start, end, step))
        for part, error in self.failing.items():
            if part in promql:
                raise error
        grid = start + step * np.arange(math.floor((end - start) / step + 1e-9) + 1)
        out = []
        for part, entries in self.series.items():
            if part in promql:
                for labels, value_at in entries:
                    points = [
                        (float(t), v) for t in grid if (v := value_at(t)) is not None
                    ]
                    out.append(Series(dict(labels), points))
        return out


def memory_config(**overrides) -> OptimizerConfig:
    resource = ResourceQuery(
        "memory_bytes",
        "sum by (instance, command, user) (aiops_process_group_resident_memory_bytes)",
        allocation="aiops_process_group_memory_limit_bytes",
        labels=("instance", "command", "user"),
    )
    settings = {"resources": (resource,), "power": None, "interval_seconds": 300.0}
    settings.update(overrides)
    return OptimizerConfig(**settings)


def identity(command: str) -> tuple[tuple[str, str], ...]:
    """The key of a HOST series under memory_config's labels."""
    return (("instance", "h1"), ("command", command), ("user", "u"))


def since(hours: float, value: float):
    return lambda t: value if t >= START - hours * HOUR else None


def run(optimizer: Optimizer, clock: Clock, cycles: int) -> None:
    for _ in range(cycles):
        optimizer.run_cycle()
        clock.now += 300.0


def test_series_with_enough_history_get_sizes_the_others_say_why_not() -> None:
    fake, clock = FakeQueries(), Clock()
    fake.series["resident_memory_bytes"] = [
        ({**HOST, "command": "old"}, since(10, 2e9)),
        ({**HOST, "command": "new"}, since(1, 1e9)),
    ]
    fake.series["memory_limit_bytes"] = [({**HOST, "command": "old"}, since(10, 3e9))]
    optimizer = Optimizer(memory_config(), fake, clock)

    run(optimizer, clock, 2)

    (state,) = optimizer.snapshot.resources
    assert state.too_short == 1
    (rec,) = state.recommendations
    assert dict(rec.labels)["command"] == "old"
    assert rec.lower <= rec.target <= rec.upper
    assert rec.target >= 2e9
    assert rec.allocated == 3e9
    assert state.savings == pytest.approx(3e9 - rec.target)
    assert state.without_allocation == 0


def test_a_series_without_a_limit_is_counted_and_left_out_of_savings() -> None:
    fake, clock = FakeQueries(), Clock()
    fake.series["resident_memory_bytes"] = [({**HOST, "command": "a"}, since(10, 2e9))]
    optimizer = Optimizer(memory_config(), fake, clock)

    run(optimizer, clock, 1)

    (state,) = optimizer.snapshot.resources
    assert state.recommendations[0].allocated is None
    assert state.without_allocation == 1
    assert state.savings == 0.0


def percent_where_a_ratio_belongs() -> tuple[FakeQueries, Clock, Optimizer]:
    """A GPU time share read as percent (40.0) where a 0-1 ratio is sized."""
    fake, clock = FakeQueries(), Clock()
    fake.series["sm_utilization_ratio"] = [
        ({**HOST, "gpu": "0", "uuid": "G", "command": "p"}, since(10, 40.0))
    ]
    resource = ResourceQuery(
        "gpu_time_ratio",
        "aiops_gpu_process_sm_utilization_ratio",
        labels=("instance", "gpu", "uuid", "command"),
    )
    config = OptimizerConfig(resources=(resource,), power=None)
    return fake, clock, Optimizer(config, fake, clock)


def test_a_percentage_where_a_ratio_belongs_is_skipped_and_counted() -> None:
    _, clock, optimizer = percent_where_a_ratio_belongs()

    run(optimizer, clock, 1)

    assert optimizer.snapshot.unit_mismatches == {"gpu_time_ratio": 1}
    assert optimizer.snapshot.resources[0].recommendations == ()


def test_a_series_in_another_unit_is_warned_of_once_and_counted_each_cycle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, clock, optimizer = percent_where_a_ratio_belongs()

    with caplog.at_level("WARNING", logger="detector.optimizer.input_warnings"):
        run(optimizer, clock, 3)
        fake.series["sm_utilization_ratio"].append(
            ({**HOST, "gpu": "1", "uuid": "H", "command": "q"}, since(10, 50.0))
        )
        run(optimizer, clock, 2)

    warned = [m for m in caplog.messages if m.startswith("unit mismatch")]
    assert [("'uuid': 'G'" in m, "'uuid': 'H'" in m) for m in warned] == [
        (True, False),
        (False, True),
    ]
    assert optimizer.snapshot.unit_mismatches == {"gpu_time_ratio": 3 + 2 * 2}


@pytest.mark.parametrize("absurd", [1e300, 1.7e308])
def test_a_reading_no_memory_reaches_is_set_apart_and_the_rest_sized(
    absurd: float,
) -> None:
    fake, clock = FakeQueries(), Clock()
    fake.series["resident_memory_bytes"] = [
        ({**HOST, "command": "ok"}, since(10, 2e9)),
        ({**HOST, "command": "odd"}, lambda t: absurd if t > START - HOUR else 2e9),
    ]
    optimizer = Optimizer(memory_config(), fake, clock)

    run(optimizer, clock, 1)

    snapshot = optimizer.snapshot
    assert snapshot.errors["recommend"] == 0
    assert snapshot.unit_mismatches == {"memory_bytes": 1}
    (rec,) = snapshot.resources[0].recommendations
    assert rec.labels == identity("ok")
    assert 2e9 <= rec.target < 1e10


def test_readings_are_cleaned_as_the_backtest_loads_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def nan_for_the_first_hour(t: float) -> float | None:
        # 60 readings at a 60 s step.
        if t < START - 10 * HOUR:
            return None
        return math.nan if t < START - 9 * HOUR else 2e9

    fake, clock = FakeQueries(), Clock()
    fake.series["resident_memory_bytes"] = [
        ({**HOST, "command": "negative"}, since(10, -4e8)),
        ({**HOST, "command": "broken"}, nan_for_the_first_hour),
    ]
    optimizer = Optimizer(memory_config(), fake, clock)

    with caplog.at_level("INFO", logger="detector.optimizer.input_warnings"):
        run(optimizer, clock, 1)

    sizers = optimizer._fleets["memory_bytes"].sizers
    negative, broken = (sizers[identity(c)] for c in ("negative", "broken"))
    assert negative.history.u.max() == 0.0
    assert np.isfinite(broken.history.u).all()
    assert (
        "readings cleaned as the backtest loads them resource=memory_bytes "
        f"negative_as_zero={len(negative.history)} non_finite_dropped=60 "
        "repeated_dropped=0"
    ) in caplog.messages
    for rec in optimizer.snapshot.resources[0].recommendations:
        assert 0.0 <= rec.lower <= rec.target <= rec.upper


def test_series_with_the_same_labels_merged_by_the_client_are_sized() -> None:
    fake, clock = FakeQueries(), Clock()
    fake.series["resident_memory_bytes"] = [
        ({**HOST, "command": "a"}, since(10, 2e9)),
        ({**HOST, "command": "a"}, since(10, 3e9)),
    ]

    def merged(promql: str, start: float, end: float, step: float):
        # As the client merges series of one answer: one's points after the
        # other's, so that times go back.
        return merge_series(fake(promql, start, end, step))

    optimizer = Optimizer(memory_config(), merged, clock)

    run(optimizer, clock, 2)

    assert optimizer.snapshot.errors["recommend"] == 0
    (rec,) = optimizer.snapshot.resources[0].recommendations
    sizer = optimizer._fleets["memory_bytes"].sizers[identity("a")]
    assert sizer.history.u.min() == 3e9
    assert rec.target >= 3e9


def test_bounds_are_whole_steps_within_the_full_size() -> None:
    fake, clock = FakeQueries(), Clock()
    gpu = {**HOST, "gpu": "0", "uuid": "G"}
    # Near the full size, where an upper bound with headroom would pass it.
    fake.series["sm_utilization_ratio"] = [
        ({**gpu, "command": "busy"}, since(10, 0.97)),
        ({**gpu, "command": "idle"}, since(10, 0.0)),
    ]
    fake.series["resident_memory_bytes"] = [
        ({**HOST, "command": "odd"}, since(10, 1e9 + 0.3)),
        ({**HOST, "command": "idle"}, since(10, 0.0)),
    ]
    resources = (
        memory_config().resources[0],
        ResourceQuery(
            "gpu_time_ratio",
            "aiops_gpu_process_sm_utilization_ratio",
            labels=("instance", "gpu", "uuid", "command"),
        ),
    )
    optimizer = Optimizer(memory_config(resources=resources), fake, clock)

    run(optimizer, clock, 1)

    memory, gpu_time = optimizer.snapshot.resources
    bounds = {
        (state.resource, dict(r.labels)["command"]): (r.lower, r.target, r.upper)
        for state in (memory, gpu_time)
        for r in state.recommendations
    }
    assert bounds[("gpu_time_ratio", "busy")][2] == 1.0
    assert bounds[("gpu_time_ratio", "idle")] == (0.0, 0.0, 0.0)
    assert bounds[("memory_bytes", "idle")] == (0.0, 0.0, 0.0)
    assert all(v == int(v) for v in bounds[("memory_bytes", "odd")])


def test_series_over_the_cap_are_counted_and_warned_of_once_a_cycle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, clock = FakeQueries(), Clock()
    fake.series["resident_memory_bytes"] = [
        ({**HOST, "command": c}, since(10, 2e9)) for c in "abcd"
    ]
    optimizer = Optimizer(memory_config(max_series=1), fake, clock)
    assert optimizer.snapshot.series_refused == {"memory_bytes": 0}

    with caplog.at_level("WARNING", logger="detector.optimizer.input_warnings"):
        run(optimizer, clock, 2)

    assert optimizer.snapshot.series_refused == {"memory_bytes": 6}
    assert (
        caplog.messages
        == [
            "series not sized, over the cap max_series=1 memory_bytes=3; "
            "raise optimizer.max_series to size them"
        ]
        * 2
    )


def test_labels_that_do_not_tell_series_apart_are_warned_of_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, clock = FakeQueries(), Clock()
    fake.series["resident_memory_bytes"] = [
        ({**HOST, "command": c}, since(10, size))
        for c, size in zip("abcd", (1e9, 3e9, 2e9, 1e9), strict=True)
    ]
    fake.series["memory_limit_bytes"] = [
        ({**HOST, "command": c}, since(10, size))
        for c, size in zip("abcd", (2e9, 4e9, 5e9, 2e9), strict=True)
    ]
    by_host = ResourceQuery(
        "memory_bytes",
        "sum by (instance, command) (aiops_process_group_resident_memory_bytes)",
        allocation="aiops_process_group_memory_limit_bytes",
        labels=("instance",),
    )
    optimizer = Optimizer(memory_config(resources=(by_host,)), fake, clock)

    with caplog.at_level("WARNING", logger="detector.optimizer.input_warnings"):
        run(optimizer, clock, 2)

    # Sized by the largest, never below one of the series it stands for.
    (rec,) = optimizer.snapshot.resources[0].recommendations
    assert rec.target >= 3e9
    assert rec.allocated == 5e9
    assert caplog.messages == [
        "series with the same labels, sized as one by the largest at each time "
        "resource=memory_bytes labels=instance series=4 identities=1; add a "
        "label that tells them apart to the resource's labels, or aggregate "
        "them in the query"
    ]


def test_power_labels_that_do_not_tell_gpus_apart_are_warned_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, clock = FakeQueries(), Clock()
    fake.series["power_watts"] = [
        ({"instance": "h1", "gpu": gpu}, since(3, 100.0)) for gpu in "01"
    ]
    config = OptimizerConfig(resources=(), power=PowerConfig(labels=("instance",)))
    optimizer = Optimizer(config, fake, clock)

    with caplog.at_level("WARNING", logger="detector.optimizer.input_warnings"):
        run(optimizer, clock, 1)

    assert caplog.messages == [
        "series with the same labels, sized as one by the largest at each time "
        "stage=power labels=instance series=2 identities=1; add a label that "
        "tells them apart to optimizer.power.labels, or aggregate them in the query"
    ]


def test_work_runs_once_per_interval_and_reads_only_new_steps() -> None:
    fake, clock = FakeQueries(), Clock()
    fake.series["resident_memory_bytes"] = [({**HOST, "command": "a"}, since(10, 2e9))]
    optimizer = Optimizer(memory_config(), fake, clock)

    assert optimizer.run_cycle() is True
    clock.now += 60.0
    assert optimizer.run_cycle() is False
    clock.now += 300.0
    assert optimizer.run_cycle() is True

    usage = [c for c in fake.calls if "resident" in c[0]]
    assert usage[1][1] == usage[0][2] + usage[0][3]


def test_the_interval_is_published_before_and_after_a_cycle() -> None:
    # The staleness alert scales with it, so it must be there from the start.
    fake, clock = FakeQueries(), Clock()
    optimizer = Optimizer(memory_config(interval_seconds=900.0), fake, clock)
    assert optimizer.snapshot.interval_seconds == 900.0

    run(optimizer, clock, 1)

    assert optimizer.snapshot.interval_seconds == 900.0


def test_a_failed_query_is_counted_and_the_snapshot_kept() -> None:
    fake, clock = FakeQueries(), Clock()
    fake.series["resident_memory_bytes"] = [({**HOST, "command": "a"}, since(10, 2e9))]
    optimizer = Optimizer(memory_config(), fake, clock)
    run(optimizer, clock, 1)
    success = optimizer.snapshot.last_success_timestamp_seconds

    fake.failing[""] = PrometheusUnreachable("down")
    run(optimizer, clock, 1)

    snapshot = optimizer.snapshot
    assert snapshot.errors == {"query": 1, "recommend": 0, "power": 0}
    assert snapshot.last_success_timestamp_seconds == success
    assert len(snapshot.resources[0].recommendations) == 1


def memory_and_gpu_time_config(**overrides) -> OptimizerConfig:
    gpu_time = ResourceQuery(
        "gpu_time_ratio",
        "aiops_gpu_process_sm_utilization_ratio",
        labels=("instance", "gpu", "uuid", "command"),
    )
    resources = (memory_config().resources[0], gpu_time)
    return memory_config(resources=resources, **overrides)


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (
            PrometheusUnreachable("refused"),
            "check that Prometheus is up at prometheus_url",
        ),
        (
            QueryTimeout("no answer in 3s"),
            "check Prometheus' load, or raise query_timeout_seconds",
        ),
    ],
)
def test_a_prometheus_that_is_away_ends_the_cycle_at_its_first_query(
    error: Exception, hint: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake, clock = FakeQueries(), Clock()
    config = memory_and_gpu_time_config(power=PowerConfig())
    optimizer = Optimizer(config, fake, clock)
    fake.failing[""] = error

    with caplog.at_level("WARNING", logger="detector.optimizer.optimizer"):
        run(optimizer, clock, 2)

    # One query a cycle, not the eight a cycle sends: each would wait as long.
    assert len(fake.calls) == 2
    assert optimizer.snapshot.errors == {"query": 2, "recommend": 0, "power": 0}
    assert (
        caplog.messages
        == [
            f"optimizer query failed resource=memory_bytes error={error}; {hint}; "
            "the cycle's other queries wait for the next interval"
        ]
        * 2
    )
    assert all(record.exc_info is None for record in caplog.records)


def test_a_hung_prometheus_costs_a_cycle_one_timeout(
    fake_prometheus: FakePrometheus,
) -> None:
    def hung(form: dict[str, str]) -> Reply:
        # Held until the test is over; the client gives up first.
        fake_prometheus.release.wait(timeout=10)
        return error_reply(503, "timeout", "too late")

    fake_prometheus.responder = hung
    with requests.Session() as session:
        client = PrometheusClient(fake_prometheus.url, session, timeout=0.2)
        optimizer = Optimizer(OptimizerConfig(), client.query_range, Clock())

        optimizer.run_cycle()

    assert len(fake_prometheus.requests) == 1
    assert optimizer.snapshot.errors == {"query": 1, "recommend": 0, "power": 0}


def test_a_query_prometheus_refuses_fails_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, clock = FakeQueries(), Clock()
    gpu = {**HOST, "gpu": "0", "uuid": "G", "command": "p"}
    fake.series["sm_utilization_ratio"] = [(gpu, since(10, 0.5))]
    optimizer = Optimizer(memory_and_gpu_time_config(), fake, clock)
    error = PrometheusHTTPError(400, "parse error")
    fake.failing["resident_memory_bytes"] = error

    with caplog.at_level("WARNING", logger="detector.optimizer.optimizer"):
        run(optimizer, clock, 1)

    (gpu_time,) = optimizer.snapshot.resources
    assert len(gpu_time.recommendations) == 1
    assert optimizer.snapshot.errors == {"query": 1, "recommend": 0, "power": 0}
    assert caplog.messages == [
        f"optimizer query failed resource=memory_bytes error={error}; "
        "check the query's PromQL in the optimizer's config"
    ]
    assert caplog.records[0].exc_info is None


def test_prometheus_lost_after_the_usage_query_is_a_query_failure() -> None:
    fake, clock = FakeQueries(), Clock()
    fake.series["resident_memory_bytes"] = [({**HOST, "command": "a"}, since(10, 2e9))]
    optimizer = Optimizer(memory_config(), fake, clock)
    fake.failing["memory_limit_bytes"] = PrometheusUnreachable("refused")

    run(optimizer, clock, 1)
    del fake.failing["memory_limit_bytes"]
    run(optimizer, clock, 1)

    assert optimizer.snapshot.errors == {"query": 1, "recommend": 0, "power": 0}
    # The lost cycle's steps are read again, not skipped past.
    usage = [c for c in fake.calls if "resident" in c[0]]
    assert usage[1][1] < usage[0][2]


def test_power_advice_and_the_gpus_that_get_none() -> None:
    fake, clock = FakeQueries(), Clock()
    gpu = {"instance": "h1", "gpu": "0", "uuid": "G0"}
    bare = {"instance": "h1", "gpu": "1", "uuid": "G1"}
    fake.series["power_watts"] = [(gpu, since(3, 100.0)), (bare, since(3, 100.0))]
    fake.series["limit_watts"] = [(gpu, since(3, 300.0)), (bare, since(3, 300.0))]
    fake.series["limit_min_watts"] = [(gpu, since(3, 100.0))]
    fake.series["limit_max_watts"] = [(gpu, since(3, 350.0))]
    config = OptimizerConfig(resources=(), power=PowerConfig())
    optimizer = Optimizer(config, fake, clock)

    run(optimizer, clock, 1)

    snapshot = optimizer.snapshot
    (advice,) = snapshot.power
    assert dict(advice.labels)["uuid"] == "G0"
    assert advice.target == 110.0
    assert advice.budget_savings_watts == 190.0
    assert snapshot.gpus == {
        "recommended": 1,
        "too_short": 0,
        "no_limit": 0,
        "no_limit_range": 1,
    }


def test_history_is_kept_no_longer_than_configured() -> None:
    fake, clock = FakeQueries(), Clock()
    fake.series["resident_memory_bytes"] = [({**HOST, "command": "a"}, since(30, 2e9))]
    optimizer = Optimizer(memory_config(history_seconds=6 * HOUR), fake, clock)

    run(optimizer, clock, 3)

    (sizer,) = optimizer._fleets["memory_bytes"].sizers.values()
    assert sizer.history.t[0] >= clock.now - 6 * HOUR - 3 * 300.0
