"""Remote write against a real Prometheus: what is pushed can be queried back."""

import subprocess
import time

import pytest
import requests

from aiops_cli.remote_write import RemoteWriteError, TimeSeries, push
from aiops_cli.stack import environment_ok, find_binary, free_port


@pytest.fixture
def prometheus(tmp_path):
    if not environment_ok():
        pytest.skip("needs the prometheus binary")
    port = free_port()
    (tmp_path / "p.yml").write_text("global: {scrape_interval: 15s}\n")
    process = subprocess.Popen(
        [
            find_binary("prometheus"),
            f"--config.file={tmp_path / 'p.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
            "--log.level=error",
        ]
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/-/ready", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_pushed_samples_come_back_from_queries(prometheus):
    now_ms = int(time.time() * 1000)
    samples = tuple((now_ms - 3000 + i * 1000, float(i) * 1.5) for i in range(3))
    labels = {"__name__": "aiops_test_value", "case": 'quote " and \\'}

    push(
        requests.Session(), prometheus + "/api/v1/write", [TimeSeries(labels, samples)]
    )

    result = requests.get(
        prometheus + "/api/v1/query",
        params={"query": "aiops_test_value[10s]", "time": now_ms / 1000},
        timeout=5,
    ).json()["data"]["result"]
    assert result[0]["metric"]["case"] == 'quote " and \\'
    assert [(round(t * 1000), float(v)) for t, v in result[0]["values"]] == list(
        samples
    )


def test_refused_push_names_the_status(prometheus):
    series = [TimeSeries({"__name__": "aiops_x"}, ((int(time.time() * 1000), 1.0),))]

    with pytest.raises(RemoteWriteError, match="answered 404"):
        push(requests.Session(), prometheus + "/api/v1/no-such-endpoint", series)


def test_unreachable_receiver_is_an_error():
    series = [TimeSeries({"__name__": "aiops_x"}, ((0, 1.0),))]

    with pytest.raises(RemoteWriteError, match="failed"):
        push(requests.Session(), f"http://127.0.0.1:{free_port()}/api/v1/write", series)
