from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiops_common.config import ConfigError, from_mapping
from detector.optimizer import prior
from detector.optimizer.config import (
    OptimizerConfig,
    PowerConfig,
    ResourceQuery,
    metric_units,
    raw_counters,
)
from detector.optimizer.features import ARM_FEATURES, NAMES
from detector.optimizer.prior import ArmPrior


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where "bandit-prior" reads its weights: nothing there until written."""
    path = tmp_path / "prior.json"
    monkeypatch.setattr(prior, "SHIPPED", path)
    return path


def flat_prior(inputs: int) -> ArmPrior:
    layer = (np.zeros((inputs, 2)), np.zeros(2))
    return ArmPrior(np.zeros(inputs), np.ones(inputs), (layer,))


def test_the_defaults_read_the_exporters_series() -> None:
    config = OptimizerConfig()

    assert [r.resource for r in config.resources] == [
        "cpu_cores",
        "memory_bytes",
        "gpu_memory_bytes",
        "gpu_time_ratio",
    ]
    assert config.power is not None


def test_a_query_in_another_unit_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"usage: reads metrics in _bytes"):
        ResourceQuery("gpu_time_ratio", "avg(aiops_gpu_memory_used_bytes)")


def test_an_allocation_in_another_unit_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"allocation: .*_ratio"):
        ResourceQuery(
            "memory_bytes",
            "aiops_process_group_resident_memory_bytes",
            allocation="aiops_host_cpu_usage_ratio",
        )


def test_cpu_seconds_under_rate_are_cores() -> None:
    query = ResourceQuery(
        "cpu_cores", "sum by (instance) (rate(node_cpu_seconds_total[5m]))"
    )

    assert query.spec.unit == "cores"


def test_function_and_label_names_are_not_metrics() -> None:
    units = metric_units(
        'sum by (instance, unit) (rate(x_seconds_total{mode!="idle"}[5m]))'
    )

    assert units == {"_seconds_total"}


@pytest.mark.parametrize(
    "promql",
    [
        'x_bytes{job="a_ratio"}',
        "x_bytes{job='a_ratio', a_ratio!=\"b\"}",
        'label_replace(x_bytes, "dst_ratio", "$1", "src", "(.*)_ratio")',
        "sum by (slice_ratio) (x_bytes)",
        "x_bytes * on (pod) group_left (limit_ratio) y_bytes",
    ],
)
def test_label_names_and_values_are_not_metrics(promql: str) -> None:
    assert metric_units(promql) == {"_bytes"}


def test_a_label_value_with_a_unit_suffix_is_not_refused() -> None:
    query = ResourceQuery("memory_bytes", 'sum by (pod) (x_bytes{job="a_ratio"})')

    assert query.spec.unit == "bytes"


def test_a_counter_read_as_it_stands_is_refused() -> None:
    with pytest.raises(
        ConfigError,
        match=r"usage: reads the counter 'aiops_process_group_cpu_seconds_total' "
        r"as it stands",
    ):
        ResourceQuery("cpu_cores", "aiops_process_group_cpu_seconds_total")


def test_an_allocation_counter_without_a_rate_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"allocation: reads the counter"):
        ResourceQuery(
            "cpu_cores",
            "rate(x_seconds_total[5m])",
            allocation="sum by (pod) (limit_seconds_total)",
        )


@pytest.mark.parametrize(
    ("promql", "raw"),
    [
        ("sum by (pod) (x_seconds_total)", ["x_seconds_total"]),
        ('x_seconds_total{mode="idle"}', ["x_seconds_total"]),
        ("max_over_time(x_seconds_total[5m])", ["x_seconds_total"]),
        ("rate(x_seconds_total[5m]) + y_seconds_total", ["y_seconds_total"]),
        ('rate(x_seconds_total{mode!="idle"}[5m])', []),
        ("sum(irate( x_total {a='b'} [1m]))", []),
        ("increase(x_total[5m:1m]) / 300", []),
        ("deriv(x_total[10m])", []),
        ('rate(x_seconds_total{job="a_total"}[5m]) * on (b_total) y_cores', []),
        ("instance:x_seconds:rate5m", []),
    ],
)
def test_a_counter_counts_only_under_a_rate(promql: str, raw: list[str]) -> None:
    assert raw_counters(promql) == raw


def test_the_label_bound_is_taken() -> None:
    with pytest.raises(ConfigError, match="bound"):
        ResourceQuery("memory_bytes", "x_bytes", labels=("pod", "bound"))


def test_power_reads_watts_only() -> None:
    with pytest.raises(ConfigError, match=r"min_limit: reads metrics in _ratio"):
        PowerConfig(min_limit="aiops_gpu_power_limit_ratio")


def test_a_nested_mapping_builds_the_config() -> None:
    raw = {
        "interval_seconds": 60,
        "policy": "vpa-style",
        "resources": [
            {"resource": "memory_bytes", "usage": "m_bytes", "labels": ["pod"]}
        ],
        "power": None,
    }

    config = from_mapping(OptimizerConfig, raw, where="optimizer")

    assert config.resources[0].labels == ("pod",)
    assert config.power is None


def test_bandit_prior_without_its_weights_is_refused(weights: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"optimizer\.policy: 'bandit-prior' needs the weights that "
        r"`make train-optimizer` writes: cannot read prior",
    ):
        from_mapping(OptimizerConfig, {"policy": "bandit-prior"}, where="optimizer")


def test_bandit_prior_with_weights_for_other_inputs_is_refused(weights: Path) -> None:
    weights.write_text(json.dumps(flat_prior(3).to_json()))

    with pytest.raises(ConfigError, match=r"policy: .*takes 3 inputs"):
        OptimizerConfig(policy="bandit-prior")


def test_bandit_prior_with_fitting_weights_is_accepted(weights: Path) -> None:
    weights.write_text(json.dumps(flat_prior(len(NAMES) + ARM_FEATURES).to_json()))

    assert OptimizerConfig(policy="bandit-prior").policy == "bandit-prior"


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        (
            {"warmup_seconds": 7200},
            r"history_seconds: must be >= resources\[1\]\.warmup_seconds "
            r"\(7200\.0 for 'memory_bytes'\), got 3600\.0",
        ),
        (
            {"warmup_seconds": 60, "step_seconds": 5400},
            r"history_seconds: must be >= resources\[1\]\.step_seconds "
            r"\(5400\.0 for 'memory_bytes'\), got 3600\.0",
        ),
    ],
)
def test_a_history_shorter_than_a_warmup_or_step_is_refused(
    resource: dict, message: str
) -> None:
    raw = {
        "history_seconds": 3600,
        "resources": [
            {"resource": "cpu_cores", "usage": "x_cores", "warmup_seconds": 600},
            {"resource": "memory_bytes", "usage": "x_bytes"} | resource,
        ],
    }

    with pytest.raises(ConfigError, match=message):
        from_mapping(OptimizerConfig, raw, where="optimizer")


@pytest.mark.parametrize(
    "raw",
    [
        {"resources": [{"resource": "memory_bytes", "usage": "x_bytes", "KEY": 1e308}]},
        {"power": {"KEY": 1e308}},
    ],
)
@pytest.mark.parametrize("key", ["step_seconds", "warmup_seconds"])
def test_a_duration_beyond_any_history_is_refused_by_its_own_name(
    raw: dict, key: str
) -> None:
    raw = json.loads(json.dumps(raw).replace("KEY", key))

    with pytest.raises(ConfigError, match=rf"{key}: must be <= 7\.776e\+06"):
        from_mapping(OptimizerConfig, raw, where="optimizer")


def test_a_history_as_long_as_the_warmup_is_accepted() -> None:
    query = ResourceQuery("memory_bytes", "x_bytes", warmup_seconds=3600)

    assert OptimizerConfig(history_seconds=3600, resources=(query,)).history_seconds


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"policy": "magic"}, "policy: must be one of"),
        ({"interval_seconds": 0}, "interval_seconds: must be > 0"),
        # Infinite durations ran one cycle, or failed every one.
        ({"interval_seconds": float("inf")}, "interval_seconds: must be finite"),
        ({"history_seconds": float("inf")}, "history_seconds: must be finite"),
        ({"query_delay_seconds": float("inf")}, "query_delay_seconds: must be fin"),
        (
            {"power": {"window_seconds": float("inf")}},
            "window_seconds: must be finite",
        ),
        (
            {
                "resources": [
                    {
                        "resource": "memory_bytes",
                        "usage": "a_bytes",
                        "period_seconds": float("inf"),
                    }
                ]
            },
            "period_seconds: must be finite",
        ),
        (
            {
                "resources": [
                    {"resource": "memory_bytes", "usage": "a_bytes"},
                    {"resource": "memory_bytes", "usage": "b_bytes"},
                ]
            },
            "duplicate resource 'memory_bytes'",
        ),
        (
            {"resources": [{"resource": "disk", "usage": "x"}]},
            "resource: must be one of",
        ),
    ],
)
def test_bad_settings_name_their_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(OptimizerConfig, raw, where="optimizer")
