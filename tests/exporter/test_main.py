"""The aiops-exporter command: refused configs and flags, and a real process that
serves on a port the kernel picks and stops cleanly on SIGTERM or SIGINT."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading

import bcrypt
import pytest
import requests

from exporter.main import main
from tests.exporter.exposition import parse, value

WAIT = 20.0


def test_bad_config_file_exits_2_naming_the_key(tmp_path, capsys):
    path = tmp_path / "exporter.yml"
    path.write_text("interval_seconds: -3\n")

    with pytest.raises(SystemExit) as exited:
        main(["--config.file", str(path)])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("aiops-exporter: ")
    assert "interval_seconds" in err


def test_bad_listen_address_flag_exits_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--web.listen-address", "127.0.0.1"])

    assert exited.value.code == 2
    assert "listen_address" in capsys.readouterr().err


def test_unknown_log_level_is_refused(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--log.level", "trace"])

    assert exited.value.code == 2
    assert "--log.level" in capsys.readouterr().err


class Exporter:
    """`python -m exporter` as a child process, its stderr read line by line."""

    def __init__(self, *args):
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("")

    def wait_for(self, fragment):
        """The first stderr line containing `fragment`, also among lines read
        while waiting for another one (the sources log in no fixed order);
        fails on EOF or timeout."""
        for line in self.seen:
            if fragment in line:
                return line
        while True:
            line = self.lines.get(timeout=WAIT)
            self.seen.append(line)
            assert line, f"exporter exited before {fragment!r}: {self.seen}"
            if fragment in line:
                return line

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)
        self.reader.join(WAIT)
        self.proc.stderr.close()


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "exporter.yml"
    # A kubelet socket that is not there: the pod source stays quiet.
    path.write_text(
        "interval_seconds: 3600\nstale_after_seconds: 7200\n"
        f"kubelet_pod_resources_socket: {tmp_path / 'kubelet.sock'}\n"
    )
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_and_stops_on_signal(config_file, signum):
    exporter = Exporter(
        "--config.file",
        str(config_file),
        "--web.listen-address",
        "127.0.0.1:0",
        "--log.level",
        "debug",
    )
    try:
        address = exporter.wait_for("msg=listening").rpartition("address=")[2]
        exporter.wait_for("source collected source=processes")
        exporter.wait_for("source collected source=pod_resources")
        base = f"http://{address}"

        parsed = parse(requests.get(f"{base}/metrics", timeout=WAIT).text)
        healthy = requests.get(f"{base}/-/healthy", timeout=WAIT)

        exporter.proc.send_signal(signum)
        assert exporter.proc.wait(WAIT) == 0
        exporter.wait_for("msg=stopped")
    finally:
        exporter.close()

    assert address.startswith("127.0.0.1:")
    assert healthy.status_code == 200
    assert value(parsed, "aiops_host_logical_cpus") == os.cpu_count()
    assert value(parsed, "aiops_exporter_source_errors_total", source="processes") == 0
    assert value(parsed, "aiops_host_memory_total_bytes") > 0
    assert value(parsed, "aiops_kubelet_pod_resources_available") == 0


def test_address_in_use_exits_1(config_file):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        host, port = taken.getsockname()

        exporter = Exporter(
            "--config.file", str(config_file), "--web.listen-address", f"{host}:{port}"
        )
        try:
            assert exporter.proc.wait(WAIT) == 1
            exporter.wait_for("cannot listen on")
        finally:
            exporter.close()


def test_bad_web_config_file_exits_2(tmp_path, capsys):
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  admin: plaintext\n")

    with pytest.raises(SystemExit) as exited:
        main(["--web.config.file", str(web)])

    assert exited.value.code == 2
    assert "basic_auth_users.admin" in capsys.readouterr().err


def test_serves_tls_with_basic_auth_from_the_web_config_file(
    config_file, tmp_path, tls_files
):
    cert, key = tls_files
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    exporter = Exporter(
        "--config.file",
        str(config_file),
        "--web.listen-address",
        "127.0.0.1:0",
        "--web.config.file",
        str(web),
    )
    try:
        line = exporter.wait_for("msg=listening")
        base = f"https://{line.rpartition('address=')[2]}"
        refused = requests.get(f"{base}/metrics", verify=str(cert), timeout=WAIT)
        served = requests.get(
            f"{base}/metrics",
            verify=str(cert),
            auth=("prometheus", "s3cret"),
            timeout=WAIT,
        )
        exporter.proc.send_signal(signal.SIGTERM)
        assert exporter.proc.wait(WAIT) == 0
    finally:
        exporter.close()

    assert "tls=True basic_auth=True" in line
    assert refused.status_code == 401
    assert served.status_code == 200
    assert "aiops_exporter_source_errors_total" in served.text
