from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge

from detector.web import WebServer


@pytest.fixture
def base_url() -> Iterator[str]:
    registry = CollectorRegistry()
    Gauge("aiops_test_gauge", "A gauge only this test registers.", registry=registry)
    server = WebServer("127.0.0.1", 0, registry)
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def test_metrics_come_from_the_given_registry(base_url: str) -> None:
    response = requests.get(f"{base_url}/metrics", timeout=5)

    assert response.status_code == 200
    assert "aiops_test_gauge 0.0" in response.text


def test_healthy_answers_and_other_paths_do_not(base_url: str) -> None:
    assert requests.get(f"{base_url}/-/healthy", timeout=5).status_code == 200
    assert requests.get(f"{base_url}/nothing", timeout=5).status_code == 404
