"""Config loading: defaults, policies, the token file, and errors naming keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiops_common.config import ConfigError, load_config
from alertmanager_webhook.config import ENV_PREFIX, WebhookConfig, read_token

GOOD = """
bearer_token_file: {token_file}
database: {database}
policies:
  - name: cap-hogs
    match: {{alertname: AiopsProcessCpuHog}}
    action: cpu_cap
    params: {{cpu_cores: 2}}
  - name: ignore-the-rest
    match: {{severity: info}}
    action: none
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "webhook.yml"
    path.write_text(text)
    return path


def test_loads_policies_and_reads_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    path = _write(
        tmp_path, GOOD.format(token_file=token_file, database=tmp_path / "w.db")
    )

    config = load_config(WebhookConfig, path, env={}, env_prefix=ENV_PREFIX)

    assert config.listen_address == "127.0.0.1:9844"
    assert config.mode == "dry-run"
    assert config.max_body_bytes == 1048576
    assert [p.name for p in config.policies] == ["cap-hogs", "ignore-the-rest"]
    assert config.policies[0].params == {"cpu_cores": 2.0}
    assert config.policies[1].action == "none"
    assert read_token(config) == "from-a-file"


def test_environment_supplies_the_token() -> None:
    env = {"AIOPS_WEBHOOK_BEARER_TOKEN": "from-env"}

    config = load_config(WebhookConfig, None, env=env, env_prefix=ENV_PREFIX)

    assert read_token(config) == "from-env"
    assert "from-env" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("database: x.db\n", "bearer_token: set exactly one"),
        ("bearer_token: a\nbearer_token_file: b\n", "bearer_token: set exactly one"),
        ("bearer_token: a\nmode: apply\n", "mode: expected one of 'dry-run'"),
        ("bearer_token: a\nmax_body_bytes: 0\n", "max_body_bytes: must be above 0"),
        ("bearer_token: a\nlog_level: loud\n", "log_level: must be one of"),
        ("bearer_token: a\nlisten_address: nowhere\n", "listen_address: listen"),
        ("bearer_token: a\ncolour: red\n", "unknown key 'colour'"),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: cpu_cap}]\n",
            "policies[0].params.cpu_cores: cpu_cap needs a number of cores",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: cpu_cap,"
            " params: {cpu_cores: -1}}]\n",
            "policies[0].params.cpu_cores: cpu_cap needs",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: reboot}]\n",
            "policies[0].action: expected one of 'cpu_cap', 'none'",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {}, action: none}]\n",
            "policies[0].match: needs at least one label",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: 1}, action: none}]\n",
            "policies[0].match.a: expected a string",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: none},"
            " {name: p, match: {c: d}, action: none}]\n",
            "policies[1].name: duplicate policy name 'p'",
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_config(WebhookConfig, path, env={}, env_prefix=ENV_PREFIX)

    assert f"{path}." in str(caught.value) or f"{path}:" in str(caught.value)
    assert message in str(caught.value)


def test_unreadable_token_file_names_the_key(tmp_path: Path) -> None:
    config = WebhookConfig(bearer_token_file=str(tmp_path / "absent"))

    with pytest.raises(ConfigError, match="^bearer_token_file: cannot read"):
        read_token(config)


def test_empty_token_file_names_the_key(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("\n")
    config = WebhookConfig(bearer_token_file=str(token_file))

    with pytest.raises(ConfigError, match="^bearer_token_file: .* is empty"):
        read_token(config)
