"""The web config file: parsing and refusals, basic auth with bcrypt, and a
server answering over TLS with a self-signed certificate."""

from __future__ import annotations

import base64

import bcrypt
import pytest
import requests

from aiops_common.config import ConfigError
from exporter.metrics import AuthFailures
from exporter.server import MetricsServer, make_app
from exporter.web_config import BasicAuth, TlsConfig, read_web_config, ssl_context

WAIT = 10.0


def hashed(password, rounds=4):
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def header(user, password):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Basic {token}"


# Shaped as a bcrypt hash, which is all a file's check asks of it.
HASH = "$2y$10$" + "a" * 53


def write(tmp_path, text):
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


def test_full_file_with_paths_relative_to_it(tmp_path):
    path = write(
        tmp_path,
        "tls_server_config:\n"
        "  cert_file: certs/cert.pem\n"
        "  key_file: /etc/keys/key.pem\n"
        "  min_version: TLS13\n"
        "basic_auth_users:\n"
        f"  prometheus: {hashed('s3cret')}\n"
        "http_server_config:\n"
        "  headers:\n"
        "    X-Frame-Options: deny\n",
    )

    web = read_web_config(path)

    assert web.tls.cert_file == tmp_path / "certs" / "cert.pem"
    assert str(web.tls.key_file) == "/etc/keys/key.pem"
    assert web.tls.min_version == "TLS13"
    assert set(web.users) == {"prometheus"}
    assert web.headers == {"X-Frame-Options": "deny"}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("tls_config:\n  cert_file: a\n", "tls_config"),
        ("tls_server_config:\n  cert_file: a\n", "key_file"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: []\n",
            "cipher_suites",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: Sometimes\n",
            "client_auth_type",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "client_ca_file",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequestClientCert\n",
            "client_auth_type",
        ),
        ("basic_auth_users:\n  admin: plaintext\n", "basic_auth_users.admin"),
        ("basic_auth_users: [admin]\n", "basic_auth_users"),
        (
            f"basic_auth_users:\n  1: '{HASH}'\n  '1': '{HASH}'\n",
            "basic_auth_users: '1' is given twice",
        ),
        (
            "http_server_config:\n  headers:\n    X-A: a\n    x-a: b\n",
            "headers: 'x-a' is given twice",
        ),
        (
            "basic_auth_users:\n  a: $2b$12$x\nbasic_auth_users:\n  b: $2b$12$y\n",
            "(?s)key 'basic_auth_users' is given twice .* in \".*web.yml\", line 3",
        ),
    ],
)
def test_bad_files_are_refused_naming_the_key(tmp_path, text, named):
    with pytest.raises(ConfigError, match=named):
        read_web_config(write(tmp_path, text))


def test_missing_certificate_is_refused_at_start(tmp_path):
    path = write(
        tmp_path, "tls_server_config:\n  cert_file: none.pem\n  key_file: none.pem\n"
    )

    with pytest.raises(ConfigError, match="cannot load"):
        ssl_context(read_web_config(path).tls)


def test_basic_auth_checks_and_remembers(monkeypatch):
    auth = BasicAuth({"prometheus": hashed("s3cret").encode()})
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda p, h: calls.append(1) or real(p, h))

    assert auth.allows(header("prometheus", "s3cret"))
    assert auth.allows(header("prometheus", "s3cret"))
    assert len(calls) == 1
    assert not auth.allows(header("prometheus", "wrong"))
    # An unknown user costs a bcrypt check too, so timing does not tell.
    assert not auth.allows(header("mallory", "s3cret"))
    assert len(calls) == 3
    for bad in (None, "", "Bearer abc", "Basic !!!", "Basic " + "bm9jb2xvbg=="):
        assert not auth.allows(bad)


@pytest.fixture
def tls_server(tls_files):
    cert, key = tls_files
    servers = []

    def start(users=None, client_ca=None):
        context = ssl_context(
            TlsConfig(
                cert_file=cert,
                key_file=key,
                client_auth_type="RequireAndVerifyClientCert"
                if client_ca
                else "NoClientCert",
                client_ca_file=client_ca,
            )
        )
        auth = BasicAuth(users) if users else None
        app = make_app(lambda: b"", auth, {"X-Content-Type-Options": "nosniff"})
        server = MetricsServer("127.0.0.1:0", app, context)
        servers.append(server)
        server.start()
        host, port = server.address
        return f"https://{host}:{port}"

    yield start
    for server in servers:
        server.stop()


def test_tls_and_basic_auth_end_to_end(tls_server, tls_files):
    cert, _ = tls_files
    base = tls_server({"prometheus": hashed("s3cret").encode()})

    refused = requests.get(f"{base}/metrics", verify=str(cert), timeout=WAIT)
    wrong = requests.get(
        f"{base}/metrics", verify=str(cert), auth=("prometheus", "x"), timeout=WAIT
    )
    served = requests.get(
        f"{base}/metrics",
        verify=str(cert),
        auth=("prometheus", "s3cret"),
        timeout=WAIT,
    )

    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert wrong.status_code == 401
    assert served.status_code == 200
    assert served.headers["Content-Type"].startswith("text/plain")
    assert served.headers["X-Content-Type-Options"] == "nosniff"


def test_plain_http_to_a_tls_port_does_not_stop_the_server(tls_server, tls_files):
    cert, _ = tls_files
    base = tls_server()

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(base.replace("https", "http") + "/metrics", timeout=WAIT)
    healthy = requests.get(f"{base}/-/healthy", verify=str(cert), timeout=WAIT)

    assert healthy.status_code == 200


def test_client_certificates_are_required_when_configured(tls_server, tls_files):
    cert, key = tls_files
    # The self-signed certificate is its own authority.
    base = tls_server(client_ca=cert)

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{base}/-/healthy", verify=str(cert), timeout=WAIT)
    healthy = requests.get(
        f"{base}/-/healthy", verify=str(cert), cert=(str(cert), str(key)), timeout=WAIT
    )

    assert healthy.status_code == 200


def test_refused_requests_are_counted_for_the_security_finding():
    failures = AuthFailures()
    app = make_app(
        lambda: b"metrics\n",
        BasicAuth({"prometheus": hashed("s3cret").encode()}),
        on_auth_failure=failures.inc,
    )
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    for credentials in (None, b"prometheus:wrong", b"prometheus:s3cret"):
        environ = {"PATH_INFO": "/metrics"}
        if credentials:
            environ["HTTP_AUTHORIZATION"] = (
                "Basic " + base64.b64encode(credentials).decode()
            )
        b"".join(app(environ, start_response))

    (family,) = failures.collect()
    assert statuses == ["401 Unauthorized", "401 Unauthorized", "200 OK"]
    assert family.name == "aiops_exporter_auth_failures"
    assert [s.value for s in family.samples if s.name.endswith("_total")] == [2]
