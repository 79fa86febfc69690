"""Parsing of Alertmanager version 4 payloads and the errors that name fields."""

from __future__ import annotations

import json
from typing import Any

import pytest

from alertmanager_webhook.payload import PayloadError, parse_body, parse_notification


def test_parses_alertmanager_025_payload(firing: dict[str, Any]) -> None:
    notification = parse_body(json.dumps(firing).encode())

    assert notification.version == "4"
    assert notification.status == "firing"
    assert notification.receiver == "aiops-webhook"
    assert notification.group_key.endswith(':{alertname="AiopsProcessCpuHog"}')
    assert notification.truncated_alerts == 0
    assert notification.group_labels == {"alertname": "AiopsProcessCpuHog"}
    assert notification.common_labels["job"] == "aiops-exporter"
    assert notification.external_url == "http://alertmanager:9093"
    assert len(notification.alerts) == 2

    first = notification.alerts[0]
    assert first.fingerprint == "4a8c21f0b6d3e917"
    assert first.labels["command"] == "aiops-testcap"
    assert first.annotations["summary"].startswith("A process group")
    # Kept verbatim: the dedupe key hashes startsAt as Alertmanager wrote it.
    assert first.starts_at == "2024-05-14T09:31:12.457813601Z"
    assert first.ends_at == "0001-01-01T00:00:00Z"
    assert first.generator_url.startswith("http://prometheus:9090/graph?")


def test_resolved_payload_has_no_firing_alerts(resolved: dict[str, Any]) -> None:
    notification = parse_notification(resolved)

    assert notification.status == "resolved"
    assert notification.firing == ()


def test_missing_truncated_alerts_means_none(firing: dict[str, Any]) -> None:
    del firing["truncatedAlerts"]

    assert parse_notification(firing).truncated_alerts == 0


def _set(payload: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = payload
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("version", "3", "version: expected '4', got '3'"),
        ("version", _DELETE, "version: missing"),
        ("groupKey", _DELETE, "groupKey: missing"),
        ("groupKey", 7, "groupKey: expected a string, got a number"),
        ("status", "pending", "status: expected 'firing' or 'resolved'"),
        ("truncatedAlerts", -1, "truncatedAlerts: expected a count of 0 or more"),
        ("commonLabels", ["a"], "commonLabels: expected an object of strings"),
        ("alerts", {}, "alerts: expected a list, got an object"),
        ("alerts.0.labels", {"user": 0}, "alerts[0].labels: expected an object of"),
        ("alerts.1.annotations", None, "alerts[1].annotations: expected an object"),
        ("alerts.0.fingerprint", _DELETE, "alerts[0].fingerprint: missing"),
        ("alerts.0.fingerprint", "", "alerts[0].fingerprint: must not be empty"),
        ("alerts.1.startsAt", "yesterday", "alerts[1].startsAt: expected an RFC 3339"),
        ("alerts.0.endsAt", "2024-05-14", "alerts[0].endsAt: expected an RFC 3339"),
        ("alerts.0.status", True, "alerts[0].status: expected a string, got a bool"),
        ("alerts.0.generatorURL", _DELETE, "alerts[0].generatorURL: missing"),
        ("groupKey", "\ud800{}", "groupKey: not valid Unicode (a lone surrogate)"),
        ("alerts.0.labels", {"user": "\udc80"}, "alerts[0].labels: not valid Unicode"),
        ("commonLabels", {"\ud800": "x"}, "commonLabels: not valid Unicode"),
    ],
)
def test_malformed_payload_names_the_field(
    firing: dict[str, Any], path: str, value: Any, message: str
) -> None:
    _set(firing, path, value)

    with pytest.raises(PayloadError) as caught:
        parse_notification(firing)

    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body: not valid JSON"),
        (b"\xff\xfe", "body: not valid JSON"),
        (b"[]", "body: expected an object, got a list"),
        (b"", "body: not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body: JSON nested too deeply"),
        (b'{"version": ' + b"9" * 5000 + b"}", "body: not usable JSON"),
    ],
)
def test_bad_body_is_named(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=f"^{message}"):
        parse_body(body)


def test_escaped_lone_surrogate_is_a_payload_error() -> None:
    body = b'{"version": "4", "groupKey": "\\ud800", "alerts": []}'

    with pytest.raises(PayloadError, match="^groupKey: not valid Unicode"):
        parse_body(body)


def test_alert_that_is_not_an_object_is_named(firing: dict[str, Any]) -> None:
    firing["alerts"][1] = "oops"

    with pytest.raises(PayloadError, match=r"^alerts\[1\]: expected an object"):
        parse_notification(firing)


def test_echoed_values_are_shortened(firing: dict[str, Any]) -> None:
    firing["status"] = "x" * 10_000

    with pytest.raises(PayloadError) as caught:
        parse_notification(firing)

    assert len(str(caught.value)) < 120
