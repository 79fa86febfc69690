"""Config loading: defaults, policies, the token file, and errors naming keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiops_common.config import ConfigError, load_config
from alertmanager_webhook.cgroup_root import check_cgroup_root
from alertmanager_webhook.config import (
    ENV_PREFIX,
    KubernetesConfig,
    WebhookConfig,
    is_loopback,
)
from alertmanager_webhook.credentials import (
    check_k8s_ca,
    read_approvers,
    read_token,
    warn_of_open_secrets,
)
from detector.config import DetectorConfig
from exporter.config import ExporterConfig

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


def test_loopback_receiver_may_run_without_auth_when_told() -> None:
    config = WebhookConfig(insecure_no_auth=True)

    assert not config.has_auth
    assert read_token(config) == ""


def test_approver_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "approvers"
    path.write_text("# who may approve\nalice:tok-1\nbob: tok-2\n")
    config = WebhookConfig(bearer_token="a", approver_tokens_file=str(path))

    assert read_approvers(config) == {"alice": "tok-1", "bob": "tok-2"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice:tok-1\nsecret-without-name\n", "line 2: expected NAME:TOKEN"),
        # The second would win unseen and the first's holder be refused.
        (
            "alice:tok-1\nbob:tok-2\nalice:tok-3\n",
            "line 3: approver 'alice' is given twice",
        ),
        # Approvals would be credited to one of them.
        ("alice:tok-1\nbob:tok-1\n", "line 2: 'bob' has the token of another approver"),
        # Whoever delivers alerts could approve the actions they queue.
        (
            "alice:tok-1\nbob:a\n",
            "line 2: 'bob' has the bearer token, which Alertmanager delivers with",
        ),
    ],
    ids=["no-name", "named-twice", "token-twice", "delivery-token"],
)
def test_bad_approver_lines_are_named_without_their_secrets(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "approvers"
    path.write_text(text)
    config = WebhookConfig(bearer_token="a", approver_tokens_file=str(path))

    with pytest.raises(ConfigError) as caught:
        read_approvers(config)

    assert str(caught.value) == f"approver_tokens_file: {message}"


def test_an_approver_with_the_basic_auth_password_is_named_without_it(
    tmp_path: Path,
) -> None:
    password = tmp_path / "password"
    password.write_text("am-pass\n")
    approvers = tmp_path / "approvers"
    approvers.write_text("alice:tok-1\nbob: am-pass\n")
    config = WebhookConfig(
        basic_auth_username="am",
        basic_auth_password_file=str(password),
        approver_tokens_file=str(approvers),
    )

    with pytest.raises(ConfigError) as caught:
        read_approvers(config)

    # Alertmanager, which holds the password, could approve what it queues.
    assert str(caught.value) == (
        "approver_tokens_file: line 2: 'bob' has the basic auth password, which "
        "Alertmanager delivers with"
    )


def test_deploy_config_is_valid() -> None:
    deploy = Path(__file__).parents[2] / "deploy" / "webhook.yml"

    config = load_config(WebhookConfig, deploy, env={}, env_prefix=ENV_PREFIX)

    assert config.mode == "dry-run"
    assert "cap-cpu-hog" in [p.name for p in config.policies]


def test_environment_supplies_the_token() -> None:
    env = {"AIOPS_WEBHOOK_BEARER_TOKEN": "from-env"}

    config = load_config(WebhookConfig, None, env=env, env_prefix=ENV_PREFIX)

    assert read_token(config) == "from-env"
    assert "from-env" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("database: x.db\n", "bearer_token: set bearer_token, bearer_token_file"),
        ("bearer_token: a\nbearer_token_file: b\n", "set at most one of bearer_token"),
        (
            "insecure_no_auth: true\nlisten_address: 0.0.0.0:9844\n",
            "insecure_no_auth: only allowed on a loopback listen_address",
        ),
        ("basic_auth_username: am\n", "basic auth needs both"),
        ("bearer_token: a\ntls_cert_file: c.pem\n", "TLS needs both"),
        ("bearer_token: a\nmode: yolo\n", "mode: expected one of 'dry-run'"),
        ("bearer_token: a\nmax_body_bytes: 0\n", "max_body_bytes: must be above 0"),
        (
            "bearer_token: a\nlog_level: loud\n",
            "log_level: expected one of 'debug', 'info', 'warn', 'error', got 'loud'",
        ),
        ("bearer_token: a\nlisten_address: nowhere\n", "listen_address: listen"),
        ("bearer_token: a\ncolour: red\n", "unknown key 'colour'"),
        ("bearer_token: a\ncgroup_name: ../x\n", "cgroup_name: must be one plain"),
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
            "policies[0].action: expected one of 'none', 'cpu_cap'",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: signal,"
            " params: {signal: SIGSEGV}}]\n",
            "policies[0].params.signal: must be one of SIGTERM",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: command}]\n",
            "policies[0].argv: a command action needs a program",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: command,"
            " argv: ['{cmd}']}]\n",
            "policies[0].argv[0]: the program must not come from labels",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: command,"
            " argv: [touch, 'x-{job']}]\n",
            "policies[0].argv[1]: 'x-{job' of policy 'p' has a lone '{' at offset "
            "2; write {{ for a brace, {label} for a label's value",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: command,"
            " argv: [touch, 'x-{ job }']}]\n",
            "policies[0].argv[1]: 'x-{ job }' of policy 'p' has a '{' at offset 2 "
            "around '{ job }', which is no label name (letters, digits and _, not "
            "first a digit); write {{ for a brace",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: command,"
            " argv: [touch, '{job}}']}]\n",
            "policies[0].argv[1]: '{job}}' of policy 'p' has a lone '}' at offset 5",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: none,"
            " argv: [x]}]\n",
            "policies[0].argv: only a command action takes argv",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: command,"
            " argv: ['']}]\n",
            "policies[0].argv: the program (argv[0]) must not be empty",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: command,"
            ' argv: [x, "a\\0b"]}]\n',
            "policies[0].argv: must not hold a NUL character",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: command,"
            " argv: [x], timeout_seconds: .inf}]\n",
            "policies[0].timeout_seconds: must be above 0 and at most 86400",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b},"
            " action: k8s_scale, params: {replicas: 1}}]\n",
            "policies[0].action: k8s_scale needs a kubernetes section",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: renice}]\n",
            "policies[0].params: renice needs nice, ionice_class or both",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: cpu_cap,"
            " params: {cpu_cores: 1}, recommend: {prometheus_url: 'http://p:9090',"
            " query: 'x', param: cores}}]\n",
            "policies[0].recommend.param: 'cores' is not one of the policy's params",
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


@pytest.mark.parametrize(
    ("mode", "owner", "readers"),
    [
        (0o644, "receiver", "its group and every user"),
        (0o604, "other", "every user"),
        (0o640, "receiver", "its group"),
        # A pod's fsGroup: the receiver reads through the group's bit.
        (0o440, "other", None),
        (0o600, "receiver", None),
        (0o400, "receiver", None),
    ],
)
def test_a_secret_file_others_may_read_is_warned_of(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    mode: int,
    owner: str,
    readers: str | None,
) -> None:
    password = tmp_path / "password"
    password.write_text("pw\n")
    password.chmod(mode)
    config = WebhookConfig(
        basic_auth_username="am", basic_auth_password_file=str(password)
    )
    own = password.stat().st_uid
    uid = own if owner == "receiver" else own + 1

    with caplog.at_level("WARNING", logger="alertmanager_webhook.credentials"):
        warn_of_open_secrets(config, uid=uid)

    assert [r.getMessage() for r in caplog.records] == (
        [
            f"secret file readable by {readers} key=basic_auth_password_file "
            f"path={str(password)!r} mode={mode:04o}; chmod 600 it, or for a "
            "Kubernetes secret volume (0644 unless set) set defaultMode: 0400, "
            "or 0440 with the pod's fsGroup"
        ]
        if readers
        else []
    )


def test_each_secret_file_is_looked_at(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("token", "password", "approvers"):
        (tmp_path / name).write_text("x\n")
        (tmp_path / name).chmod(0o644)
    config = WebhookConfig(
        bearer_token_file=str(tmp_path / "token"),
        basic_auth_username="am",
        basic_auth_password_file=str(tmp_path / "password"),
        approver_tokens_file=str(tmp_path / "approvers"),
    )

    with caplog.at_level("WARNING", logger="alertmanager_webhook.credentials"):
        warn_of_open_secrets(config)

    keys = [r.getMessage().split(" key=")[1].split()[0] for r in caplog.records]
    assert keys == [
        "bearer_token_file",
        "basic_auth_password_file",
        "approver_tokens_file",
    ]


@pytest.mark.parametrize(
    ("api_url", "ca_file"),
    [
        # A folder of hashed certificates, as requests takes one.
        ("https://10.0.0.1:6443", "{dir}"),
        # kubectl proxy: plain HTTP on loopback trusts no CA.
        ("http://127.0.0.1:8001", "{dir}/absent.crt"),
    ],
)
def test_a_ca_folder_or_a_plain_http_api_server_passes(
    tmp_path: Path, api_url: str, ca_file: str
) -> None:
    k8s = KubernetesConfig(api_url=api_url, ca_file=ca_file.format(dir=tmp_path))

    check_k8s_ca(WebhookConfig(bearer_token="a", kubernetes=k8s))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("127.example.com", False),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.1", False),
    ],
)
def test_only_literal_loopback_addresses_count_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_environment_word_read_as_a_boolean_is_shown_as_written() -> None:
    env = {"AIOPS_WEBHOOK_BEARER_TOKEN": "a", "AIOPS_WEBHOOK_LOG_LEVEL": "off"}

    with pytest.raises(ConfigError) as caught:
        load_config(WebhookConfig, None, env=env, env_prefix=ENV_PREFIX)

    # Not advice to quote it: `off` is no log level either way.
    assert str(caught.value) == (
        "environment variable AIOPS_WEBHOOK_LOG_LEVEL: log_level: expected one of "
        "'debug', 'info', 'warn', 'error', got 'off'"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "insecure_no_auth: 'true'\n",
            "insecure_no_auth: expected true or false, got the text 'true' (quoted "
            "in YAML, so a string); write it unquoted to give the YAML boolean true",
        ),
        (
            "bearer_token: a\nlog_level: off\n",
            "log_level: expected one of 'debug', 'info', 'warn', 'error', got the "
            "boolean false: YAML reads unquoted no, off and false as false, none of "
            "which is a valid value",
        ),
        (
            "bearer_token: a\nworkers: true\n",
            "workers: expected a whole number, got true, a YAML boolean (unquoted "
            "yes and on read as true too)",
        ),
        (
            "bearer_token: a\nmax_body_bytes: '1024'\n",
            "max_body_bytes: expected a whole number, got the text '1024' (quoted in "
            "YAML, so a string); write it unquoted to give the YAML number 1024",
        ),
        (
            "bearer_token: a\nblast_radius_window_seconds: on\n",
            "blast_radius_window_seconds: expected a number, got true, a YAML "
            "boolean (unquoted yes and on read as true too)",
        ),
        (
            "bearer_token: a\npolicies: [{name: p, match: {a: b}, action: none,"
            " retries: no}]\n",
            "policies[0].retries: expected a whole number, got false, a YAML boolean "
            "(unquoted no and off read as false too)",
        ),
    ],
    ids=[
        "quoted-boolean",
        "boolean-log-level",
        "boolean-workers",
        "quoted-int",
        "boolean-float",
        "boolean-policy-int",
    ],
)
def test_a_value_of_the_wrong_yaml_type_is_shown_as_written(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_config(WebhookConfig, path, env={}, env_prefix=ENV_PREFIX)

    assert str(caught.value) == f"{path}.{message}"


@pytest.mark.parametrize("service", [WebhookConfig, DetectorConfig, ExporterConfig])
def test_every_service_refuses_a_log_level_yaml_made_a_boolean(
    tmp_path: Path, service: type
) -> None:
    path = _write(tmp_path, "log_level: off\n")

    with pytest.raises(
        ConfigError, match="expected one of 'debug', 'info', 'warn', 'error'"
    ):
        load_config(service, path, env={}, env_prefix="AIOPS_TEST_")


def test_a_cgroup_root_that_is_no_cgroup_filesystem_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, f"bearer_token: a\ncgroup_root: {tmp_path}\n")

    with pytest.raises(ConfigError) as caught:
        load_config(WebhookConfig, path, env={}, env_prefix=ENV_PREFIX)

    assert str(caught.value).startswith(
        f"{path}.cgroup_root: {str(tmp_path)!r} is not a cgroup filesystem"
    )


def test_a_missing_cgroup_root_is_refused(tmp_path: Path) -> None:
    # A typo: the caps would fall back to renice, saying so only per action.
    with pytest.raises(ConfigError, match="cgroup_root: .*absent' does not exist"):
        WebhookConfig(bearer_token="a", cgroup_root=str(tmp_path / "absent"))


# Lines in the shape of /proc/self/mountinfo; {root} is the test's folder.
V2_HOST = (
    "35 24 0:30 / {root} rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 "
    "cgroup2 rw,nsdelegate,memory_recursiveprot\n"
)
V1_HOST = (
    "31 23 0:28 / {root} rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / {root}/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "41 31 0:38 / {root}/unified rw,relatime - cgroup2 cgroup2 rw\n"
)
TMPFS_ONLY = "31 23 0:28 / {root} rw,relatime - tmpfs tmpfs rw,mode=755\n"


@pytest.mark.parametrize(
    ("mounts", "folder", "usable"),
    [
        (V2_HOST, "", True),
        (V2_HOST, "delegated", True),
        (V1_HOST, "", True),
        (TMPFS_ONLY, "", False),
        (TMPFS_ONLY + "50 31 0:40 / {root}/a/b rw - cgroup2 cgroup2 rw\n", "", False),
        (V2_HOST + TMPFS_ONLY, "", False),
        ("36 24 0:31 / {root}/my\\040cg rw - cgroup2 cgroup2 rw\n", "my cg", True),
    ],
    ids=[
        "v2",
        "inside-v2",
        "v1",
        "tmpfs",
        "cgroup-too-deep",
        "v2-covered",
        "escaped-space",
    ],
)
def test_cgroup_root_is_a_cgroup_mount_or_a_folder_of_them(
    tmp_path: Path, mounts: str, folder: str, usable: bool
) -> None:
    root = tmp_path / "cg"
    (root / folder).mkdir(parents=True, exist_ok=True)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(mounts.format(root=root))

    if usable:
        check_cgroup_root(str(root / folder), mountinfo)
    else:
        with pytest.raises(ConfigError, match="is not a cgroup filesystem"):
            check_cgroup_root(str(root / folder), mountinfo)
