"""Fault reports: built from the receiver's database and a fake Prometheus,
stored with the incident, served behind auth, rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from alertmanager_webhook.app import Auth, create_app
from alertmanager_webhook.report.content import ReportBuilder
from alertmanager_webhook.report.service import Reports
from alertmanager_webhook.store import Store
from tests.alertmanager_webhook.conftest import load_payload, make_config

NOW = 1_715_679_600.0
HOST = "gpu-node-07:9835"
USER, PASSWORD = "reader", "report-s3cret"
BASIC = {"Authorization": "Basic cmVhZGVyOnJlcG9ydC1zM2NyZXQ="}


class Series(NamedTuple):
    labels: dict[str, str]
    points: list[tuple[float, float]]


def line(value: float, jump: float = 0.0) -> list[tuple[float, float]]:
    return [(NOW - 3600 + 60 * i, value + (jump if i > 50 else 0.0)) for i in range(61)]


CAUSE = {"cause_kind": "process_group", "cause": "stress (alice)"}
PROM = {
    "aiops_anomaly_observed_value": [Series({}, line(0.3, 0.6))],
    "aiops_anomaly_expected_lower": [Series({}, line(0.2))],
    "aiops_anomaly_expected_upper": [Series({}, line(0.4))],
    "aiops_anomaly_expected_value": [Series({}, line(0.3))],
    "aiops_rootcause_rank": [
        Series(CAUSE, [(NOW, 1.0)]),
        Series({"cause_kind": "process_group", "cause": "java (bob)"}, [(NOW, 2.0)]),
    ],
    "aiops_rootcause_share_ratio": [Series(CAUSE, [(NOW, 0.93)])],
}


class FakeProm:
    def __init__(self, answers: dict[str, list[Series]]) -> None:
        self.answers = answers

    def __call__(self, promql: str, start: float, end: float, step: float):
        return self.answers.get(promql.split("{")[0], [])


def payload(**extra_labels: str) -> dict:
    body = load_payload("alertmanager-0.25-firing")
    alert = body["alerts"][0]
    alert["labels"] = {
        "alertname": "AiopsAnomalyRootCause",
        "query": "host_cpu",
        "instance": HOST,
        "severity": "warning",
        **extra_labels,
    }
    body["alerts"] = [alert]
    return body


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(str(tmp_path / "webhook.db"), clock=lambda: datetime.now(UTC))
    yield opened
    opened.close()


def app_for(store: Store, answers: dict | None):
    builder = ReportBuilder(
        store, None if answers is None else FakeProm(answers), lambda: NOW
    )
    return create_app(
        make_config(policies=[]),
        store,
        auth=Auth(basic_user=USER, basic_password=PASSWORD),
        registry=CollectorRegistry(),
        reports=Reports(store, builder),
    )


def post(client, body) -> None:
    assert client.post("/webhook", json=body, headers=BASIC).status_code == 200


def test_report_is_served_behind_auth_and_stored(store):
    answers = {**PROM, "aiops_process_group_processes": [Series({}, [(NOW, 1.0)])]}
    client = app_for(store, answers).test_client()
    post(client, payload(command="stress", user="alice", **CAUSE))

    assert client.get("/api/v1/incidents/1/report.html").status_code == 401
    page = client.get("/api/v1/incidents/1/report.html", headers=BASIC)
    markdown = client.get("/api/v1/incidents/1/report.md", headers=BASIC).text
    plot = client.get("/api/v1/incidents/1/plot.png", headers=BASIC)

    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "stress (alice)" in page.text and "93%" in page.text
    assert "data:image/png;base64," in page.text
    assert "| 1 | process_group | stress (alice) | 93% |" in markdown
    assert "| 2 | process_group | java (bob) | ? |" in markdown
    assert "Missing data" not in markdown
    assert plot.data.startswith(b"\x89PNG")
    (row,) = store.query("SELECT incident_id, plot FROM reports")
    assert row["incident_id"] == 1 and row["plot"] == plot.data


def test_latest_report_is_found_by_alertname_and_instance(store):
    client = app_for(store, PROM).test_client()
    post(client, payload(**CAUSE))

    found = client.get(
        f"/api/v1/incidents/latest/report.md?alertname=AiopsAnomalyRootCause&instance={HOST}",
        headers=BASIC,
    )
    unknown = client.get(
        "/api/v1/incidents/latest/report.md?instance=nope", headers=BASIC
    )

    assert found.status_code == 200 and "stress (alice)" in found.text
    assert unknown.status_code == 404
    assert client.get("/api/v1/incidents/9/report.md", headers=BASIC).status_code == 404


def test_no_data_in_prometheus_is_said_and_no_cause_invented(store):
    client = app_for(store, {}).test_client()
    post(client, payload())

    markdown = client.get("/api/v1/incidents/1/report.md", headers=BASIC).text

    assert "No cause could be ranked." in markdown
    assert "Prometheus has no aiops_anomaly_observed_value" in markdown
    assert "no ranked cause" in markdown
    assert client.get("/api/v1/incidents/1/plot.png", headers=BASIC).status_code == 404


def test_without_prometheus_the_alert_labels_still_give_the_cause(store):
    client = app_for(store, None).test_client()
    post(client, payload(**CAUSE))

    markdown = client.get("/api/v1/incidents/1/report.md", headers=BASIC).text

    assert "| 1 | process_group | stress (alice) | ? |" in markdown
    assert "no Prometheus to read series from" in markdown


def test_a_cause_gone_before_the_report_is_said(store):
    answers = {**PROM, "aiops_process_group_processes": []}
    client = app_for(store, answers).test_client()
    post(client, payload(command="stress", user="alice", **CAUSE))

    markdown = client.get("/api/v1/incidents/1/report.md", headers=BASIC).text

    assert "they exited before this report" in markdown


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium for a headless render"
)
def test_report_renders_in_headless_chromium(store, tmp_path):
    app = app_for(store, PROM)
    post(app.test_client(), payload(**CAUSE))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = (
        f"http://{USER}:{PASSWORD}@127.0.0.1:{server.server_port}"
        "/api/v1/incidents/1/report.html"
    )
    try:
        result = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'chromium'}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=25,
        )
    finally:
        server.shutdown()
        thread.join(5)

    dom = result.stdout
    assert "<h1>Fault report: AiopsAnomalyRootCause on" in dom, result.stderr[-2000:]
    assert "stress (alice)" in dom
    width = re.search(r'data-natural-width="(\d+)"', dom)
    assert width is not None and int(width.group(1)) > 0
