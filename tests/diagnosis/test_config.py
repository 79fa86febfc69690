"""The diagnosis settings parse from YAML-shaped mappings and refuse bad values."""

from __future__ import annotations

import pytest

from aiops_common.config import ConfigError, from_mapping
from detector.diagnosis.config import DiagnosisConfig


def test_lists_become_tuples_and_defaults_hold():
    config = from_mapping(DiagnosisConfig, {"allowed_gpu_users": ["alice", "bob"]})

    assert config.allowed_gpu_users == ("alice", "bob")
    assert config.top_causes == 3 and "xmrig" in config.miner_names


@pytest.mark.parametrize(
    ("key", "value"),
    [("top_causes", 0), ("window_seconds", 0), ("min_share", 2), ("max_incidents", 0)],
)
def test_bad_values_name_their_key(key, value):
    with pytest.raises(ConfigError, match=key):
        from_mapping(DiagnosisConfig, {key: value})
