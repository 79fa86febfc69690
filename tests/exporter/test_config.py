"""ExporterConfig: defaults, file and environment values, and refused settings."""

from __future__ import annotations

import pytest

from aiops_common.config import ConfigError
from exporter.config import ExporterConfig, read_config


def write(tmp_path, text):
    path = tmp_path / "exporter.yml"
    path.write_text(text)
    return path


def test_defaults_without_a_file():
    config = read_config(None, env={})

    assert config == ExporterConfig()
    assert config.listen_address == "127.0.0.1:9842"
    assert config.interval_seconds == 15.0
    assert config.top_groups == 10


def test_file_values_and_env_override(tmp_path):
    path = write(tmp_path, "interval_seconds: 5\ntop_groups: 3\nlog_level: debug\n")

    config = read_config(path, env={"AIOPS_EXPORTER_TOP_GROUPS": "7"})

    assert config.interval_seconds == 5.0
    assert config.top_groups == 7
    assert config.log_level == "debug"


def test_unknown_key_is_named(tmp_path):
    path = write(tmp_path, "interval_seconds: 5\ntop_group: 3\n")

    with pytest.raises(ConfigError, match="unknown key 'top_group'"):
        read_config(path, env={})


def test_unknown_env_key_is_named():
    with pytest.raises(ConfigError, match="AIOPS_EXPORTER_PORT"):
        read_config(None, env={"AIOPS_EXPORTER_PORT": "9842"})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("interval_seconds: 0\n", "interval_seconds"),
        ("interval_seconds: fast\n", "interval_seconds"),
        ("top_groups: 0\n", "top_groups"),
        ("top_groups: 2.5\n", "top_groups"),
        ("source_timeout_seconds: -1\n", "source_timeout_seconds"),
        ("stale_after_seconds: 15\n", "stale_after_seconds"),
        ("log_level: verbose\n", "log_level"),
        ("listen_address: localhost\n", "listen_address"),
        ("process_grouping: pod\n", "process_grouping"),
        ("expected_gpus: -1\n", "expected_gpus"),
        ("process_cmdline: maybe\n", "process_cmdline"),
    ],
)
def test_bad_value_is_named(tmp_path, text, key):
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        read_config(path, env={})

    assert f"{path}.{key}" in str(caught.value)


def test_gpu_and_process_settings(tmp_path):
    path = write(
        tmp_path,
        "process_grouping: container\nprocess_cmdline: true\n"
        "gpu_processes_per_pid: true\nexpected_gpus: 8\nkmsg_path: ''\n",
    )

    config = read_config(path, env={"AIOPS_EXPORTER_EXPECTED_GPUS": "4"})

    assert config.process_grouping == "container"
    assert config.process_cmdline and config.gpu_processes_per_pid
    assert config.expected_gpus == 4
    assert config.kmsg_path == ""
    assert ExporterConfig().expected_gpus is None
