"""The command line: config errors exit 2, and a real waitress server end to end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from alertmanager_webhook.main import main

from .conftest import TOKEN, bound_socket, receiver_command, wait_healthy


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "webhook.yml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        ("bearer_token: a\nmode: yolo\n", [], ".mode: expected one of 'dry-run'"),
        ("database: x.db\n", [], ".bearer_token: set bearer_token, bearer_token_file"),
        ("bearer_token_file: /nonexistent/token\n", [], "bearer_token_file: cannot"),
        (
            "bearer_token: a\n",
            ["--web.listen-address", "localhost"],
            "--web.listen-address: listen address must be HOST:PORT",
        ),
        (
            "bearer_token: a\n",
            ["--web.listen-address", "127.0.0.1:99999"],
            "port must be 0 to 65535",
        ),
        (
            "insecure_no_auth: true\n",
            ["--web.listen-address", "0.0.0.0:9844"],
            "insecure_no_auth: only allowed on a loopback listen_address",
        ),
        (
            "bearer_token: a\ntls_cert_file: /nonexistent/c.pem\n"
            "tls_key_file: /nonexistent/k.pem\n",
            [],
            "tls_cert_file: cannot load '/nonexistent/c.pem'",
        ),
        ("bearer_token: a\ndatabase: /nonexistent/dir/x.db\n", [], "database: cannot"),
        (
            "bearer_token: a\nkubernetes: {ca_file: ''}\n",
            [],
            ".kubernetes.ca_file: must name the CA bundle",
        ),
        (
            "bearer_token: a\nkubernetes: {token_file: ''}\n",
            [],
            ".kubernetes.token_file: must name the token's file",
        ),
    ],
)
def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    args: list[str],
    message: str,
) -> None:
    for name in list(os.environ):
        if name.startswith("AIOPS_WEBHOOK_"):
            monkeypatch.delenv(name)

    status = main(["--config.file", _config(tmp_path, text), *args])

    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("aiops-webhook: ")
    assert message in err


@pytest.mark.parametrize(
    ("token", "ca", "message"),
    [
        ("", "ca.crt", "kubernetes.token_file: '{dir}/token' is empty"),
        ("t", "absent.crt", "kubernetes.ca_file: cannot load '{dir}/absent.crt'"),
        ("t", "junk.crt", "kubernetes.ca_file: cannot load '{dir}/junk.crt' as CA"),
    ],
)
def test_kubernetes_files_are_checked_at_start(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    token: str,
    ca: str,
    message: str,
) -> None:
    for name in list(os.environ):
        if name.startswith("AIOPS_WEBHOOK_"):
            monkeypatch.delenv(name)
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "junk.crt").write_text("not a certificate\n")
    text = (
        "bearer_token: a\n"
        f"database: {tmp_path / 'x.db'}\n"
        f"kubernetes: {{token_file: {tmp_path / 'token'}, ca_file: {tmp_path / ca}}}\n"
    )

    # Were the files not checked, the receiver would find its port taken.
    with bound_socket() as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        status = main(
            ["--config.file", _config(tmp_path, text), "--web.listen-address", address]
        )

    assert status == 2
    assert message.format(dir=tmp_path) in capsys.readouterr().err


def test_unknown_log_level_flag_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--log.level", "loud"])

    assert caught.value.code == 2


def test_a_taken_port_is_one_log_line_and_exit_1(tmp_path: Path) -> None:
    config = _config(tmp_path, f"bearer_token: a\ndatabase: {tmp_path / 'x.db'}\n")
    with bound_socket() as holder:
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"

        done = subprocess.run(
            receiver_command(config, address),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert done.returncode == 1
    assert f"cannot listen address={address}" in done.stderr
    assert "Traceback" not in done.stderr
    # What an earlier run left queued waits for a receiver that can listen.
    assert "worker started" not in done.stderr


def test_serves_with_waitress_and_stops_on_sigterm(
    start_server, firing: dict[str, Any]
) -> None:
    base, proc, log_path = start_server()
    session = requests.Session()
    session.trust_env = False  # no proxy between us and 127.0.0.1
    auth = {"Authorization": f"Bearer {TOKEN}"}
    wait_healthy(session, base, proc)

    accepted = session.post(f"{base}/webhook", json=firing, headers=auth, timeout=5)
    duplicate = session.post(f"{base}/webhook", json=firing, headers=auth, timeout=5)
    refused = session.post(f"{base}/webhook", json=firing, timeout=5)
    padded = dict(firing, padding="x" * 5000)
    too_big = session.post(f"{base}/webhook", json=padded, headers=auth, timeout=5)
    huge = session.post(f"{base}/webhook", data=b"x" * 20000, headers=auth, timeout=5)
    actions = session.get(f"{base}/api/v1/actions", headers=auth, timeout=5)
    metrics = session.get(f"{base}/metrics", timeout=5).text

    assert accepted.json() == {"status": "accepted", "alerts": 2, "actions": 2}
    assert duplicate.json() == {"status": "duplicate"}
    assert refused.status_code == 401
    assert too_big.status_code == 413
    assert too_big.json() == {"error": "body larger than 4096 bytes"}
    # Far over the cap, waitress refuses the body before buffering it.
    assert huge.status_code == 413
    assert [a["plan"] for a in actions.json()["data"]] == ["no action", "no action"]
    assert 'aiops_webhook_notifications_total{result="rejected"} 1.0' in metrics
    # As the exporter and detector: no `_created` series beside each counter.
    assert "_created" not in metrics

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    log = log_path.read_text()
    assert "msg=listening" in log
    assert "msg=stopped" in log
    assert TOKEN not in log
    assert json.dumps(firing["alerts"][0]["annotations"]["description"]) not in log


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_serves_tls_with_the_configured_certificate(
    start_server, tmp_path: Path, firing: dict[str, Any]
) -> None:
    cert, key = _self_signed(tmp_path)
    base, proc, log_path = start_server(
        f"tls_cert_file: {cert}\ntls_key_file: {key}\n", scheme="https"
    )
    session = requests.Session()
    session.trust_env = False
    session.verify = str(cert)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    wait_healthy(session, base, proc)

    accepted = session.post(f"{base}/webhook", json=firing, headers=auth, timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.Session().get(base.replace("https", "http") + "/-/healthy", timeout=2)

    assert accepted.json()["status"] == "accepted"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    log = log_path.read_text()
    assert "tls=True" in log
    assert TOKEN not in log


def test_ctrl_c_stops_like_sigterm(start_server) -> None:
    base, proc, log_path = start_server()
    session = requests.Session()
    session.trust_env = False
    wait_healthy(session, base, proc)

    proc.send_signal(signal.SIGINT)

    assert proc.wait(timeout=15) == 0
    log = log_path.read_text()
    assert "msg=shutting down signal=SIGINT" in log
    assert "Traceback" not in log


def test_a_token_file_others_may_read_is_warned_of_at_start(start_server) -> None:
    base, proc, log_path = start_server(token_mode=0o644)
    session = requests.Session()
    session.trust_env = False
    wait_healthy(session, base, proc)

    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=15) == 0
    [line] = [x for x in log_path.read_text().splitlines() if "secret file" in x]
    assert "level=WARNING" in line
    assert "readable by its group and every user key=bearer_token_file" in line
    assert "mode=0644" in line
    assert TOKEN not in line


def test_the_program_each_policy_will_run_is_logged_at_start(start_server) -> None:
    policies = (
        "  - {name: mark, match: {alertname: X}, action: command, argv: ['true']}\n"
    )
    base, proc, log_path = start_server(policies=policies)
    session = requests.Session()
    session.trust_env = False
    wait_healthy(session, base, proc)

    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=15) == 0
    found = shutil.which("true")
    log = log_path.read_text()
    assert f"msg=program policy=mark program='true' path={found}" in log


@pytest.mark.parametrize(
    ("address", "tls", "warned"),
    [
        ("0.0.0.0:9844", False, True),
        (":9844", False, True),
        ("127.0.0.1:9844", False, False),
        ("0.0.0.0:9844", True, False),
    ],
)
def test_plain_http_beyond_loopback_is_warned_of_at_start(
    caplog: pytest.LogCaptureFixture, address: str, tls: bool, warned: bool
) -> None:
    from alertmanager_webhook.main import warn_of_plain_http

    from .conftest import make_config

    files = {"tls_cert_file": "c.pem", "tls_key_file": "k.pem"} if tls else {}
    config = make_config(listen_address=address, **files)

    with caplog.at_level("WARNING", logger="alertmanager_webhook.main"):
        warn_of_plain_http(config)

    messages = [r.getMessage() for r in caplog.records]
    assert messages == (
        [
            f"no TLS beyond loopback address={address}: tokens and alerts cross "
            "the network in clear text; set tls_cert_file and tls_key_file"
        ]
        if warned
        else []
    )


def test_a_policy_held_back_by_the_receivers_mode_is_warned_of_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from alertmanager_webhook.main import warn_of_held_modes

    from .conftest import POLICIES, make_config

    policies = [
        {**POLICIES[0], "mode": "approve"},
        {**POLICIES[1], "mode": "dry-run"},
    ]
    config = make_config(mode="dry-run", policies=policies)

    with caplog.at_level("WARNING", logger="alertmanager_webhook.main"):
        warn_of_held_modes(config)
        warn_of_held_modes(make_config(mode="apply", policies=policies))

    assert [r.getMessage() for r in caplog.records] == [
        "policy=cap-testcap mode=approve runs as dry-run: the receiver's mode is "
        "dry-run, and a policy may only be more cautious; set the receiver's "
        "mode to approve to let it"
    ]
