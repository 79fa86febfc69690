"""Shared fixtures of the exporter tests: a self-signed certificate made with
the openssl command line, for the TLS tests, and a stand-in kubelet."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.exporter.fake_kubelet import Kubelet


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """(cert, key) of a certificate for 127.0.0.1 and localhost, valid a day."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def socket_dir():
    """A new directory for unix sockets, removed afterwards."""
    # Short, so that the socket path stays within the 107 bytes a unix
    # socket address allows, which a pytest tmp_path may exceed.
    directory = Path(tempfile.mkdtemp(prefix="kubelet-"))
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def kubelet(socket_dir):
    """A stand-in kubelet serving PodResources in `socket_dir`."""
    server = Kubelet(socket_dir / "kubelet.sock")
    yield server
    server.stop()
