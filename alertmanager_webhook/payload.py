"""Parses Alertmanager's webhook payload (version "4") into frozen dataclasses.

Every error names the offending field, so that a 400 answer says what to fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

VERSION = "4"
STATUSES = ("firing", "resolved")


class PayloadError(ValueError):
    """A body that is not a usable Alertmanager notification; names the field."""


@dataclass(frozen=True)
class Alert:
    """One alert of a notification; times are kept as Alertmanager wrote them."""

    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str
    ends_at: str
    generator_url: str
    fingerprint: str


@dataclass(frozen=True)
class Notification:
    """One webhook delivery: a group of alerts routed to one receiver."""

    version: str
    group_key: str
    truncated_alerts: int
    status: str
    receiver: str
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str
    alerts: tuple[Alert, ...]

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status == "firing")


def parse_body(body: bytes) -> Notification:
    """Decode a JSON request body and parse it as a notification."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body: not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise PayloadError("body: JSON nested too deeply") from exc
    except ValueError as exc:
        # Integers beyond Python's digit limit for int() from text.
        raise PayloadError("body: not usable JSON: a number is too long") from exc

    return parse_notification(data)


def parse_notification(data: Any) -> Notification:
    """Check a decoded payload against the version 4 format and build it."""
    if not isinstance(data, dict):
        raise PayloadError(f"body: expected an object, got {_kind(data)}")

    version = _string(data, "version", "")
    if version != VERSION:
        raise PayloadError(f"version: expected {VERSION!r}, got {version!r}")

    alerts = _field(data, "alerts", "")
    if not isinstance(alerts, list):
        raise PayloadError(f"alerts: expected a list, got {_kind(alerts)}")

    return Notification(
        version=version,
        group_key=_string(data, "groupKey", ""),
        truncated_alerts=_truncated(data),
        status=_status(data, ""),
        receiver=_string(data, "receiver", ""),
        group_labels=_labels(data, "groupLabels", ""),
        common_labels=_labels(data, "commonLabels", ""),
        common_annotations=_labels(data, "commonAnnotations", ""),
        external_url=_string(data, "externalURL", ""),
        alerts=tuple(_alert(a, f"alerts[{i}].") for i, a in enumerate(alerts)),
    )


def _alert(data: Any, where: str) -> Alert:
    if not isinstance(data, dict):
        raise PayloadError(f"{where[:-1]}: expected an object, got {_kind(data)}")

    fingerprint = _string(data, "fingerprint", where)
    if not fingerprint:
        raise PayloadError(f"{where}fingerprint: must not be empty")

    return Alert(
        status=_status(data, where),
        labels=_labels(data, "labels", where),
        annotations=_labels(data, "annotations", where),
        starts_at=_timestamp(data, "startsAt", where),
        ends_at=_timestamp(data, "endsAt", where),
        generator_url=_string(data, "generatorURL", where),
        fingerprint=fingerprint,
    )


def _field(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise PayloadError(f"{where}{key}: missing")
    return data[key]


def _string(data: dict[str, Any], key: str, where: str) -> str:
    value = _field(data, key, where)
    if not isinstance(value, str):
        raise PayloadError(f"{where}{key}: expected a string, got {_kind(value)}")
    if not _is_utf8(value):
        raise PayloadError(f"{where}{key}: not valid Unicode (a lone surrogate)")
    return value


def _is_utf8(text: str) -> bool:
    # JSON may escape a lone surrogate ("\ud800"); json.loads accepts it, but no
    # UTF-8 encoder (SQLite's, a log's) will, and that must be a 400, not a 500.
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _status(data: dict[str, Any], where: str) -> str:
    value = _string(data, "status", where)
    if value not in STATUSES:
        raise PayloadError(
            f"{where}status: expected 'firing' or 'resolved', got {_short(value)}"
        )
    return value


def _labels(data: dict[str, Any], key: str, where: str) -> dict[str, str]:
    value = _field(data, key, where)
    if not isinstance(value, dict) or not all(
        isinstance(v, str) for v in value.values()
    ):
        raise PayloadError(f"{where}{key}: expected an object of strings")
    if not all(_is_utf8(k) and _is_utf8(v) for k, v in value.items()):
        raise PayloadError(f"{where}{key}: not valid Unicode (a lone surrogate)")
    return dict(value)


def _timestamp(data: dict[str, Any], key: str, where: str) -> str:
    value = _string(data, key, where)

    # Alertmanager writes RFC 3339 with up to nanoseconds, and endsAt of a firing
    # alert as Go's zero time "0001-01-01T00:00:00Z"; Python 3.11 reads both.
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise PayloadError(
            f"{where}{key}: expected an RFC 3339 time, got {_short(value)}"
        )
    return value


def _truncated(data: dict[str, Any]) -> int:
    # Alertmanager before 0.22 did not send truncatedAlerts; absent means none.
    value = data.get("truncatedAlerts", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(
            f"truncatedAlerts: expected a count of 0 or more, got {_short(value)}"
        )
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


def _short(value: Any) -> str:
    # Error messages go back to the sender and into logs; keep echoed values short.
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."
