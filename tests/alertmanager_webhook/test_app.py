"""The HTTP API through Flask's test client, with a real store and fresh metrics."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from .conftest import AUTH, TOKEN, make_config


def _post(client: FlaskClient, payload: Any, headers: dict[str, str] | None = None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(
        "/webhook",
        data=body,
        headers=AUTH if headers is None else headers,
        content_type="application/json",
    )


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_new_notification_is_stored_and_planned(
    client: FlaskClient, registry: CollectorRegistry, firing: dict[str, Any]
) -> None:
    response = _post(client, firing)

    assert response.status_code == 200
    assert response.get_json() == {"status": "accepted", "alerts": 2, "actions": 2}
    total = "aiops_webhook_notifications_total"
    assert _sample(registry, total, result="accepted") == 1
    assert _sample(registry, total, result="duplicate") == 0
    assert _sample(registry, "aiops_webhook_alerts_total", status="firing") == 2
    assert (
        _sample(
            registry,
            "aiops_webhook_actions_total",
            action="cpu_cap",
            mode="dry-run",
            result="planned",
        )
        == 1
    )
    assert _sample(registry, "aiops_webhook_last_accepted_timestamp_seconds") > 0


def test_same_notification_twice_is_acted_on_once(
    client: FlaskClient,
    registry: CollectorRegistry,
    tmp_path: Path,
    firing: dict[str, Any],
) -> None:
    first = _post(client, firing)
    # A repeat_interval resend: same alerts, reworded annotation, new order.
    firing["alerts"].reverse()
    firing["commonAnnotations"]["summary"] = "still going"
    second = _post(client, firing)

    assert first.get_json()["status"] == "accepted"
    assert second.status_code == 200
    assert second.get_json() == {"status": "duplicate"}
    db = tmp_path / "webhook.db"
    assert _count(db, "notifications") == 1
    assert _count(db, "actions") == 2
    assert (
        _sample(registry, "aiops_webhook_notifications_total", result="duplicate") == 1
    )


def test_resolved_notification_is_stored_but_plans_nothing(
    client: FlaskClient, tmp_path: Path, resolved: dict[str, Any]
) -> None:
    response = _post(client, resolved)

    assert response.get_json() == {"status": "accepted", "alerts": 1, "actions": 0}
    db = tmp_path / "webhook.db"
    assert (_count(db, "alerts"), _count(db, "actions")) == (1, 0)


def test_alert_without_a_policy_is_stored_without_action(
    client: FlaskClient, tmp_path: Path, firing: dict[str, Any]
) -> None:
    for alert in firing["alerts"]:
        alert["labels"]["alertname"] = "AiopsSomethingElse"

    response = _post(client, firing)

    assert response.get_json() == {"status": "accepted", "alerts": 2, "actions": 0}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer tøken"},
    ],
)
def test_bad_token_is_refused_and_not_acted_on(
    client: FlaskClient,
    registry: CollectorRegistry,
    tmp_path: Path,
    firing: dict[str, Any],
    headers: dict[str, str],
) -> None:
    response = _post(client, firing, headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json() == {"error": "missing or invalid bearer token"}
    assert _count(tmp_path / "webhook.db", "notifications") == 0
    assert _sample(registry, "aiops_webhook_auth_failures_total") == 1
    assert (
        _sample(registry, "aiops_webhook_notifications_total", result="accepted") == 0
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"version": "4",', "body: not valid JSON"),
        (b"null", "body: expected an object, got nothing"),
        ({"version": "3"}, "version: expected '4', got '3'"),
        ({"version": "4"}, "alerts: missing"),
    ],
)
def test_bad_body_is_400_naming_the_reason(
    client: FlaskClient, registry: CollectorRegistry, body: Any, error: str
) -> None:
    response = _post(client, body)

    assert response.status_code == 400
    assert response.get_json()["error"].startswith(error)
    assert (
        _sample(registry, "aiops_webhook_notifications_total", result="rejected") == 1
    )


def test_missing_alert_field_is_400(
    client: FlaskClient, tmp_path: Path, firing: dict[str, Any]
) -> None:
    del firing["alerts"][1]["startsAt"]

    response = _post(client, firing)

    assert response.status_code == 400
    assert response.get_json() == {"error": "alerts[1].startsAt: missing"}
    assert _count(tmp_path / "webhook.db", "notifications") == 0


def test_oversized_body_is_413(
    make_client, registry: CollectorRegistry, firing: dict[str, Any]
) -> None:
    client = make_client(make_config(max_body_bytes=1024))
    body = json.dumps(firing).encode()
    assert len(body) > 1024

    response = _post(client, body)

    assert response.status_code == 413
    assert response.get_json() == {"error": "body larger than 1024 bytes"}
    assert (
        _sample(registry, "aiops_webhook_notifications_total", result="rejected") == 1
    )


def test_storage_failure_is_503_so_alertmanager_retries(
    client: FlaskClient,
    registry: CollectorRegistry,
    tmp_path: Path,
    firing: dict[str, Any],
) -> None:
    db = tmp_path / "webhook.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE actions")

    response = _post(client, firing)

    assert response.status_code == 503
    assert "error" in response.get_json()
    assert _count(db, "notifications") == 0
    assert _sample(registry, "aiops_webhook_notifications_total", result="failed") == 1


def test_api_lists_recent_alerts_and_actions(
    client: FlaskClient, firing: dict[str, Any]
) -> None:
    _post(client, firing)

    alerts = client.get("/api/v1/alerts", headers=AUTH).get_json()
    actions = client.get("/api/v1/actions?limit=1", headers=AUTH).get_json()

    assert alerts["status"] == "success"
    assert {a["fingerprint"] for a in alerts["data"]} == {
        "4a8c21f0b6d3e917",
        "d19e07b25c4f8a36",
    }
    assert alerts["data"][0]["labels"]["alertname"] == "AiopsProcessCpuHog"
    [action] = actions["data"]
    assert action["action"] == "none"
    assert set(action) >= {"alert_fingerprint", "policy", "mode", "target", "plan"}


@pytest.mark.parametrize("path", ["/api/v1/alerts", "/api/v1/actions"])
def test_api_needs_the_token(client: FlaskClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


@pytest.mark.parametrize("limit", ["0", "abc", "1001", "-1"])
def test_api_refuses_bad_limit(client: FlaskClient, limit: str) -> None:
    response = client.get(f"/api/v1/actions?limit={limit}", headers=AUTH)

    assert response.status_code == 400
    assert response.get_json()["error"].startswith("limit:")


def test_health_and_metrics_need_no_token(
    client: FlaskClient, firing: dict[str, Any]
) -> None:
    _post(client, firing)

    healthy = client.get("/-/healthy")
    metrics = client.get("/metrics")

    assert healthy.status_code == 200
    assert metrics.status_code == 200
    text = metrics.get_data(as_text=True)
    assert 'aiops_webhook_notifications_total{result="rejected"} 0.0' in text
    assert 'aiops_webhook_notifications_total{result="accepted"} 1.0' in text
    assert "aiops_webhook_auth_failures_total 0.0" in text
    assert 'aiops_webhook_request_duration_seconds_count{handler="/webhook"} 1.0' in (
        text
    )


def test_unknown_path_and_method_answer_json(client: FlaskClient) -> None:
    assert client.get("/nope").status_code == 404
    assert "error" in client.get("/nope").get_json()
    assert client.get("/webhook").status_code == 405
