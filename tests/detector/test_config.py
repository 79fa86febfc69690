from __future__ import annotations

import re
from pathlib import Path

import pytest

from aiops_common.config import ConfigError, load_config
from detector.config import ENV_PREFIX, DetectorConfig

GOOD = """
prometheus_url: http://127.0.0.1:9090
queries:
  - name: gpu_temp
    promql: DCGM_FI_DEV_GPU_TEMP
    step_seconds: 30
model:
  window: 100
  min_points: 20
  threshold: 5
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    path = tmp_path / "detector.yml"
    path.write_text(text)
    return load_config(DetectorConfig, path, env=env or {}, env_prefix=ENV_PREFIX)


def test_good_file_loads_with_defaults_filled(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)

    assert config.queries[0].name == "gpu_temp"
    assert config.queries[0].step_seconds == 30.0
    assert config.model.window == 100
    assert config.model.threshold == 5.0
    assert config.interval_seconds == 15.0
    assert config.query_delay_seconds == 30.0
    assert config.history_seconds == 3600.0
    assert config.listen_address == "127.0.0.1:9843"
    assert config.max_series == 10000


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD, env={"AIOPS_DETECTOR_INTERVAL_SECONDS": "60"})

    assert config.interval_seconds == 60.0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (GOOD + "interval_seconds: 0\n", "interval_seconds"),
        (GOOD + "query_delay_seconds: -1\n", "query_delay_seconds"),
        (GOOD + "history_seconds: 0\n", "history_seconds"),
        (GOOD + "query_timeout_seconds: 0\n", "query_timeout_seconds"),
        (GOOD + "query_timeout_seconds: .inf\n", "query_timeout_seconds"),
        (GOOD + "history_seconds: 1.0e+308\n", "history_seconds"),
        (GOOD + "optimizer: {history_seconds: 1.0e+308}\n", "history_seconds"),
        (GOOD + "max_series: 0\n", "max_series"),
        (GOOD + "log_level: loud\n", "log_level"),
        (GOOD + "listen_address: nowhere\n", "listen_address"),
        (GOOD + "prometheus_url: 127.0.0.1:9090\n", "prometheus_url"),
        (GOOD + "surprise: 1\n", "surprise"),
        (GOOD.replace("window: 100", "window: 10"), "min_points"),
        (GOOD.replace("threshold: 5", "threshold: 0"), "threshold"),
        (GOOD.replace("name: gpu_temp", "name: gpu-temp"), "queries[0].name"),
        (GOOD.replace("step_seconds: 30", "step_seconds: 0"), "step_seconds"),
        (GOOD.replace("promql: DCGM_FI_DEV_GPU_TEMP", "promql: ' '"), "promql"),
        (GOOD.replace("window: 100", "window: many"), "model.window"),
        ("prometheus_url: http://127.0.0.1:9090\n", "queries"),
    ],
)
def test_bad_values_are_refused_naming_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load(tmp_path, text)


def test_duplicate_query_names_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace("model:", "  - name: gpu_temp\n    promql: up\nmodel:")

    with pytest.raises(ConfigError, match=r"queries: duplicate query name 'gpu_temp'"):
        load(tmp_path, text)


SUITE = (
    GOOD.replace(
        "model:",
        """model:
  kind: ensemble
  ensemble:
    risk: 0.001
    seasonal:
      days: 3
      weeks: 2
    forecaster:
      enabled: true
""",
    )
    + """
state_dir: /var/lib/aiops-detector
shard: 1/4
shard_by: [instance]
entities:
  - name: gpu
    queries: [gpu_temp, gpu_power]
    join: [instance, gpu]
    method: autoencoder
"""
)


def test_the_suite_settings_load(tmp_path: Path) -> None:
    text = SUITE.replace(
        "model:", "  - name: gpu_power\n    promql: DCGM_FI_DEV_POWER_USAGE\nmodel:"
    )

    config = load(tmp_path, text)

    assert config.model.kind == "ensemble"
    assert config.model.ensemble.risk == 0.001
    assert config.model.ensemble.seasonal.weeks == 2
    assert config.model.ensemble.forecaster.enabled is True
    assert (config.shard, config.shard_by) == ("1/4", ("instance",))
    assert config.entities[0].method == "autoencoder"
    assert config.entities[0].join == ("instance", "gpu")


def test_the_model_defaults_to_the_ensemble(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)

    assert config.model.kind == "ensemble"
    assert config.state_dir == "" and config.shard == "0/1"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (GOOD.replace("window: 100", "kind: forest"), "model.kind"),
        (GOOD + "shard: 3/3\n", "shard"),
        (GOOD.replace("threshold: 5", "threshold: 5\n  ensemble: {risk: 2}"), "risk"),
        (
            GOOD.replace(
                "threshold: 5",
                "threshold: 5\n  ensemble: {seasonal: {bucket_seconds: 7}}",
            ),
            "bucket_seconds",
        ),
        (
            GOOD + "entities: [{name: g, queries: [gpu_temp, nope], join: [gpu]}]\n",
            "entities[0]",
        ),
        (
            GOOD + "entities: [{name: x, queries: [gpu_temp, gpu_temp], join: [g]}]\n",
            "queries",
        ),
        (GOOD + "entities: [{name: g, queries: [a, b], join: []}]\n", "join"),
    ],
)
def test_bad_suite_values_are_refused_naming_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load(tmp_path, text)


PER_QUERY = GOOD.replace(
    "model:",
    """  - name: host_cpu
    promql: aiops_host_cpu_usage_ratio
    model:
      kind: robust
      window: 60
model:
  kind: ensemble
""",
)


def test_a_query_may_carry_its_own_model(tmp_path: Path) -> None:
    config = load(tmp_path, PER_QUERY)
    temp, cpu = config.queries

    assert temp.model is None
    assert config.model_for(temp) is config.model
    assert config.model_for(temp).kind == "ensemble"
    assert config.model_for(cpu).kind == "robust"
    assert config.model_for(cpu).window == 60
    # The section is read whole: what it leaves out is the built-in default,
    # not the global section's.
    assert config.model_for(cpu).threshold == 6.0


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("kind: robust", "kind: forest", "queries[1].model.kind"),
        ("window: 60", "window: 2", "queries[1].model.window"),
        ("window: 60", "surprise: 1", "queries[1].model: unknown key 'surprise'"),
    ],
)
def test_a_bad_query_model_is_refused_naming_the_key(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load(tmp_path, PER_QUERY.replace(old, new))


def test_an_entity_refuses_a_query_with_its_own_threshold(tmp_path: Path) -> None:
    text = PER_QUERY.replace("window: 60", "threshold: 4") + (
        "entities: [{name: g, queries: [gpu_temp, host_cpu], join: [instance]}]\n"
    )

    with pytest.raises(ConfigError, match=r"entities\[0\]: queries \['host_cpu'\]"):
        load(tmp_path, text)
