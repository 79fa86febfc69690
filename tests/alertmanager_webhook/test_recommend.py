"""Recommendations read from a Prometheus that refuses the connection."""

from __future__ import annotations

import pytest
import requests

from alertmanager_webhook.policy_config import PolicyConfig, RecommendConfig
from alertmanager_webhook.recommend import Recommender

from .conftest import bound_socket


def test_a_refused_connection_is_a_short_reason_in_the_plan_and_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = requests.Session()
    session.trust_env = False  # no proxy between us and 127.0.0.1
    # Bound but not listening: a connection to it is refused.
    with bound_socket() as closed:
        port = closed.getsockname()[1]
        policy = PolicyConfig(
            name="cap",
            match={"alertname": "X"},
            action="cpu_cap",
            params={"cpu_cores": 2.0},
            recommend=RecommendConfig(
                prometheus_url=f"http://127.0.0.1:{port}",
                query='aiops_recommended_cpu_cores{job="{job}"}',
                param="cpu_cores",
            ),
        )
        with caplog.at_level("WARNING", logger="alertmanager_webhook.recommend"):
            params, note = Recommender(session).params(policy, {"job": "train"})

    [line] = [r.getMessage() for r in caplog.records]
    assert params == {"cpu_cores": 2.0}
    assert note == (
        "static cpu_cores 2.0, because Prometheus at "
        f"127.0.0.1:{port} did not answer: connection refused"
    )
    assert line == (
        f"recommendation query failed url=http://127.0.0.1:{port} "
        "err=connection refused"
    )
