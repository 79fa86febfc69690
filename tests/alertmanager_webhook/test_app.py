"""The HTTP API through Flask's test client, with a real store and fresh metrics."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from alertmanager_webhook.app import Auth, create_app
from alertmanager_webhook.store import Store

from .conftest import APPROVER_TOKEN, AUTH, TOKEN, Receiver, make_config


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_new_notification_is_stored_and_queued(
    receiver: Receiver, firing: dict[str, Any]
) -> None:
    response = receiver.post(firing)

    assert response.status_code == 200
    assert response.get_json() == {"status": "accepted", "alerts": 2, "actions": 2}
    total = "aiops_webhook_notifications_total"
    assert receiver.sample(total, result="accepted") == 1
    assert receiver.sample(total, result="duplicate") == 0
    assert receiver.sample("aiops_webhook_alerts_total", status="firing") == 2
    # `none` is decided at intake; the cap waits for the worker.
    assert [a["result"] for a in receiver.actions()] == ["queued", "skipped"]
    assert receiver.sample("aiops_webhook_last_accepted_timestamp_seconds") > 0


def test_worker_plans_what_was_queued(
    receiver: Receiver, firing: dict[str, Any]
) -> None:
    receiver.post(firing)

    assert receiver.worker.drain() == 1

    cap, none = receiver.actions()
    assert (cap["policy"], cap["mode"], cap["result"]) == (
        "cap-testcap",
        "dry-run",
        "planned",
    )
    assert cap["plan"].startswith(
        "cap 2 processes command='aiops-testcap' user='root' (pids 4211, 4212) "
        "to 0.5 CPU cores with cgroup v1 cpu.cfs_period_us=100000 "
        "cpu.cfs_quota_us=50000 in aiops-webhook/target-"
    )
    assert none["plan"] == "no action"
    sample = receiver.sample(
        "aiops_webhook_actions_total",
        action="cpu_cap",
        mode="dry-run",
        result="planned",
    )
    assert sample == 1
    assert receiver.sample("aiops_webhook_queue_depth", state="queued") == 0


def test_same_notification_twice_is_acted_on_once(
    receiver: Receiver, tmp_path: Path, firing: dict[str, Any]
) -> None:
    first = receiver.post(firing)
    # A repeat_interval resend: same alerts, reworded annotation, new order.
    firing["alerts"].reverse()
    firing["commonAnnotations"]["summary"] = "still going"
    second = receiver.post(firing)

    assert first.get_json()["status"] == "accepted"
    assert second.status_code == 200
    assert second.get_json() == {"status": "duplicate"}
    db = tmp_path / "webhook.db"
    assert _count(db, "notifications") == 1
    assert _count(db, "actions") == 2
    total = "aiops_webhook_notifications_total"
    assert receiver.sample(total, result="duplicate") == 1


def test_same_alert_in_another_group_is_acted_on_once(
    receiver: Receiver, firing: dict[str, Any]
) -> None:
    receiver.post(firing)
    firing["groupKey"] = '{}:{alertname="AiopsProcessCpuHog", instance="x"}'

    answer = receiver.post(firing).get_json()

    assert answer == {"status": "accepted", "alerts": 2, "actions": 0}
    assert len(receiver.actions()) == 2


def test_resolved_notification_alone_plans_nothing(
    receiver: Receiver, tmp_path: Path, resolved: dict[str, Any]
) -> None:
    response = receiver.post(resolved)

    assert response.get_json() == {"status": "accepted", "alerts": 1, "actions": 0}
    db = tmp_path / "webhook.db"
    assert (_count(db, "alerts"), _count(db, "actions")) == (1, 0)


def test_alert_without_a_policy_is_stored_without_action(
    receiver: Receiver, firing: dict[str, Any]
) -> None:
    for alert in firing["alerts"]:
        alert["labels"]["alertname"] = "AiopsSomethingElse"

    response = receiver.post(firing)

    assert response.get_json() == {"status": "accepted", "alerts": 2, "actions": 0}


def test_the_worker_is_woken_only_for_what_was_queued(
    store: Store, firing: dict[str, Any]
) -> None:
    woken: list[int] = []
    app = create_app(
        make_config(),
        store,
        auth=Auth(bearer=TOKEN),
        notify=lambda: woken.append(1),
    ).test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}

    unmatched = json.loads(json.dumps(firing))
    for alert in unmatched["alerts"]:
        alert["labels"]["alertname"] = "AiopsSomethingElse"
        alert["fingerprint"] = alert["fingerprint"][::-1]
    assert app.post("/webhook", json=unmatched, headers=headers).status_code == 200
    assert woken == []

    app.post("/webhook", json=firing, headers=headers)
    assert woken == [1]
    app.post("/webhook", json=firing, headers=headers)  # a resend
    assert woken == [1]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer tøken"},
        {"Authorization": f"Bearer {APPROVER_TOKEN}"},
    ],
)
def test_bad_credentials_are_refused_and_not_acted_on(
    receiver: Receiver, tmp_path: Path, firing: dict[str, Any], headers
) -> None:
    response = receiver.post(firing, headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json() == {"error": "missing or invalid credentials"}
    assert _count(tmp_path / "webhook.db", "notifications") == 0
    assert receiver.sample("aiops_webhook_auth_failures_total") == 1


def _basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        (_basic("alertmanager", "pw-123"), 200),
        (_basic("alertmanager", "pw-12"), 401),
        (_basic("other", "pw-123"), 401),
        ({"Authorization": "Basic !!notbase64"}, 401),
        (AUTH, 401),
    ],
)
def test_basic_auth(make_receiver, firing: dict[str, Any], headers, code) -> None:
    auth = Auth(basic_user="alertmanager", basic_password="pw-123")
    receiver = make_receiver(auth=auth)

    assert receiver.post(firing, headers).status_code == code


def test_open_receiver_needs_insecure_no_auth(
    make_receiver, store: Store, firing
) -> None:
    config = make_config(bearer_token="", insecure_no_auth=True)
    receiver = make_receiver(config, auth=Auth(insecure_no_auth=True))

    assert receiver.post(firing, headers={}).status_code == 200
    with pytest.raises(ValueError, match="needs credentials"):
        create_app(config, store, auth=Auth())


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
    receiver: Receiver, body: Any, error: str
) -> None:
    response = receiver.post(body)

    assert response.status_code == 400
    assert response.get_json()["error"].startswith(error)
    total = "aiops_webhook_notifications_total"
    assert receiver.sample(total, result="rejected") == 1


def test_missing_alert_field_is_400(
    receiver: Receiver, tmp_path: Path, firing: dict[str, Any]
) -> None:
    del firing["alerts"][1]["startsAt"]

    response = receiver.post(firing)

    assert response.status_code == 400
    assert response.get_json() == {"error": "alerts[1].startsAt: missing"}
    assert _count(tmp_path / "webhook.db", "notifications") == 0


def test_oversized_body_is_413(make_receiver, firing: dict[str, Any]) -> None:
    receiver = make_receiver(make_config(max_body_bytes=1024))
    body = json.dumps(firing).encode()
    assert len(body) > 1024

    response = receiver.post(body)

    assert response.status_code == 413
    assert response.get_json() == {"error": "body larger than 1024 bytes"}
    total = "aiops_webhook_notifications_total"
    assert receiver.sample(total, result="rejected") == 1


def test_storage_failure_is_503_so_alertmanager_retries(
    receiver: Receiver, tmp_path: Path, firing: dict[str, Any]
) -> None:
    db = tmp_path / "webhook.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE actions")

    response = receiver.post(firing)

    assert response.status_code == 503
    assert "error" in response.get_json()
    assert _count(db, "notifications") == 0
    total = "aiops_webhook_notifications_total"
    assert receiver.sample(total, result="failed") == 1


def test_api_lists_recent_alerts_and_actions(
    receiver: Receiver, firing: dict[str, Any]
) -> None:
    receiver.post(firing)
    receiver.worker.drain()

    alerts = receiver.client.get("/api/v1/alerts", headers=AUTH).get_json()
    actions = receiver.client.get("/api/v1/actions?limit=1", headers=AUTH).get_json()

    assert alerts["status"] == "success"
    assert {a["fingerprint"] for a in alerts["data"]} == {
        "4a8c21f0b6d3e917",
        "d19e07b25c4f8a36",
    }
    first = alerts["data"][0]
    assert first["labels"]["alertname"] == "AiopsProcessCpuHog"
    assert {"status", "starts_at"} <= set(first)
    [action] = actions["data"]
    assert action["action"] == "none"
    assert set(action) >= {
        "alert_fingerprint",
        "policy",
        "mode",
        "target",
        "plan",
        "result",
        "labels",
    }


@pytest.mark.parametrize("path", ["/api/v1/alerts", "/api/v1/actions"])
def test_api_pages_back_with_before(
    receiver: Receiver, firing: dict[str, Any], path: str
) -> None:
    receiver.post(firing)
    receiver.worker.drain()
    every = receiver.client.get(path, headers=AUTH).get_json()["data"]
    assert len(every) >= 2

    first = receiver.client.get(f"{path}?limit=1", headers=AUTH).get_json()["data"]
    after = first[-1]["id"]
    rest = receiver.client.get(
        f"{path}?limit=1000&before={after}", headers=AUTH
    ).get_json()["data"]

    assert [r["id"] for r in first + rest] == [r["id"] for r in every]


@pytest.mark.parametrize(
    "before", ["0", "x", "-3", str(2**63), "\u00b2", "\uff13", "9" * 5000]
)
def test_api_refuses_a_bad_before(receiver: Receiver, before: str) -> None:
    response = receiver.client.get(f"/api/v1/actions?before={before}", headers=AUTH)

    assert response.status_code == 400
    assert response.get_json()["error"].startswith("before: expected an id")


@pytest.mark.parametrize("path", ["/api/v1/alerts", "/api/v1/actions"])
def test_api_needs_the_token(receiver: Receiver, path: str) -> None:
    response = receiver.client.get(path)

    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


@pytest.mark.parametrize("limit", ["0", "abc", "1001", "-1", "\u00b2", "\u0663"])
def test_api_refuses_bad_limit(receiver: Receiver, limit: str) -> None:
    response = receiver.client.get(f"/api/v1/actions?limit={limit}", headers=AUTH)

    assert response.status_code == 400
    assert response.get_json()["error"].startswith("limit:")


def _approve(receiver: Receiver, action_id: int, token: str):
    return receiver.client.post(
        f"/api/v1/actions/{action_id}/approve",
        headers={"Authorization": f"Bearer {token}"},
    )


def test_approve_endpoint_needs_an_approver_token(
    make_receiver, firing: dict[str, Any]
) -> None:
    receiver = make_receiver(make_config(mode="approve"))
    receiver.post(firing)
    receiver.worker.drain()
    cap = receiver.actions()[0]
    assert cap["result"] == "pending"

    # The token Alertmanager holds may deliver alerts, not approve actions.
    assert _approve(receiver, cap["id"], TOKEN).status_code == 401
    assert _approve(receiver, 999, APPROVER_TOKEN).status_code == 404
    approved = _approve(receiver, cap["id"], APPROVER_TOKEN)
    again = _approve(receiver, cap["id"], APPROVER_TOKEN)

    assert approved.get_json() == {"status": "approved", "id": cap["id"]}
    assert again.status_code == 409
    assert (
        again.get_json()["error"]
        == f"action {cap['id']} is approved, not pending approval"
    )
    assert receiver.actions()[0]["approved_by"] == "api:ops"


def test_approvals_are_off_without_approver_tokens(
    make_receiver, firing: dict[str, Any]
) -> None:
    receiver = make_receiver(auth=Auth(bearer=TOKEN))

    assert _approve(receiver, 1, TOKEN).status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/incidents/{id}/report.html",
        "/api/v1/incidents/{id}/report.md",
        "/api/v1/incidents/{id}/plot.png",
    ],
)
def test_id_past_sqlite_integers_is_not_found(receiver: Receiver, path: str) -> None:
    # SQLite's INTEGER stops at 2**63 - 1; a larger id raised OverflowError (500).
    response = receiver.client.get(path.format(id=2**63), headers=AUTH)

    assert response.status_code == 404


def test_approving_an_id_past_sqlite_integers_is_not_found(make_receiver) -> None:
    receiver = make_receiver(make_config(mode="approve"))

    assert _approve(receiver, 2**63, APPROVER_TOKEN).status_code == 404
    assert _approve(receiver, 2**63 - 1, APPROVER_TOKEN).status_code == 404


def test_health_and_metrics_need_no_token(
    receiver: Receiver, firing: dict[str, Any]
) -> None:
    receiver.post(firing)

    healthy = receiver.client.get("/-/healthy")
    metrics = receiver.client.get("/metrics")

    assert healthy.status_code == 200
    assert metrics.status_code == 200
    text = metrics.get_data(as_text=True)
    assert 'aiops_webhook_notifications_total{result="rejected"} 0.0' in text
    assert 'aiops_webhook_notifications_total{result="accepted"} 1.0' in text
    assert "aiops_webhook_auth_failures_total 0.0" in text
    assert 'aiops_webhook_worker_errors_total{stage="apply"} 0.0' in text
    assert 'aiops_webhook_request_duration_seconds_count{handler="/webhook"} 1.0' in (
        text
    )
    # Bounds below a millisecond, where answers fall: a p99 taken from the
    # client's default buckets (5 ms and up) could only read 4.95 ms.
    bounds = [
        float(line.split('le="')[1].split('"')[0])
        for line in text.splitlines()
        if line.startswith("aiops_webhook_request_duration_seconds_bucket{")
        and 'handler="/webhook"' in line
    ]
    assert min(bounds) <= 0.00025
    assert sum(b < 0.005 for b in bounds) >= 3


def test_unknown_path_and_method_answer_json(receiver: Receiver) -> None:
    assert receiver.client.get("/nope").status_code == 404
    assert "error" in receiver.client.get("/nope").get_json()
    assert receiver.client.get("/webhook").status_code == 405
