"""What a fault report says, gathered from the receiver's database and, when
one is configured, from Prometheus (the detector's anomaly, rank and fault
series). Whatever cannot be read is listed as missing; no cause is invented.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from alertmanager_webhook.report.plot import band_plot
from alertmanager_webhook.store import Store

log = logging.getLogger(__name__)

# The plot shows this much before the first alert of the incident.
LEAD_SECONDS = 3600.0
STEP_SECONDS = 60.0
# A cause's processes unseen this long before the report are taken as gone.
GONE_SECONDS = 300.0

FAULT_CLASS_WORDS = {
    "application_fault": "restart the application; the GPU needs nothing",
    "reset_gpu": "drain the GPU's work and reset it",
    "reboot": "drain the node and reboot it",
    "drain_and_inspect": "drain the node and have the GPU inspected",
    "thermal_throttle": "the GPU runs slower because it is too hot: check cooling",
    "power_throttle": "the GPU is held at its power limit: check the limit",
}


class _Series(Protocol):
    # Read-only, so that any series with such attributes fits, lists included.
    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def points(self) -> Sequence[tuple[float, float]]: ...


QueryRange = Callable[[str, float, float, float], Sequence[_Series]]


class ReportNotFound(LookupError):
    """No incident (notification) with that id."""


@dataclass(frozen=True)
class RankedCause:
    rank: int
    kind: str
    name: str
    share: float | None


@dataclass(frozen=True)
class Report:
    incident_id: int
    title: str
    status: str
    received_at: str
    alerts: tuple[Mapping[str, Any], ...]
    timeline: tuple[tuple[str, str], ...]
    causes: tuple[RankedCause, ...]
    diagnosis: tuple[str, ...]
    recommended: tuple[str, ...]
    taken: tuple[str, ...]
    missing: tuple[str, ...]
    plot: bytes | None = field(default=None, repr=False)


class ReportBuilder:
    """Builds the Report of one incident; `query_range` is None without Prometheus."""

    def __init__(
        self,
        store: Store,
        query_range: QueryRange | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._query = query_range
        self._clock = clock

    def build(self, incident_id: int) -> Report:
        rows = self._store.query(
            "SELECT * FROM notifications WHERE id = ?", [incident_id]
        )
        if not rows:
            raise ReportNotFound(f"no incident {incident_id!r}")
        notification = dict(rows[0])
        alerts = [
            _decoded(row)
            for row in self._store.query(
                "SELECT * FROM alerts WHERE notification_id = ? ORDER BY id",
                [incident_id],
            )
        ]
        missing: list[str] = []
        main = _main_alert(alerts)
        labels = main["labels"] if main else {}
        title = labels.get("alertname", "incident") + (
            f" on {labels['instance']}" if labels.get("instance") else ""
        )

        causes = self._causes(labels, missing)
        diagnosis, recommended = _diagnosis(alerts, causes)
        plot = self._plot(main, title, missing)
        if self._query is not None and causes:
            self._check_gone(labels, missing)
        timeline, taken = self._timeline(notification)
        if not causes:
            missing.append(
                "no ranked cause: the alert carries none and the detector "
                "exported no ranking for it"
            )
        return Report(
            incident_id=incident_id,
            title=title,
            status=notification["status"],
            received_at=notification["received_at"],
            alerts=tuple(alerts),
            timeline=tuple(timeline),
            causes=tuple(causes),
            diagnosis=tuple(diagnosis),
            recommended=tuple(recommended),
            taken=tuple(taken),
            missing=tuple(missing),
            plot=plot,
        )

    def _causes(
        self, labels: Mapping[str, str], missing: list[str]
    ) -> list[RankedCause]:
        causes: list[RankedCause] = []
        query, instance = labels.get("query"), labels.get("instance")
        if self._query is not None and query and instance:
            matchers = {
                "query": query,
                "instance": instance,
                "gpu": labels.get("gpu", ""),
            }
            ranks = self._latest("aiops_rootcause_rank", matchers, missing)
            shares = {
                s.labels.get("cause", ""): s.points[-1][1]
                for s in self._fetch("aiops_rootcause_share_ratio", matchers, missing)
                if s.points
            }
            for series in sorted(ranks, key=lambda s: s.points[-1][1]):
                cause = series.labels.get("cause", "")
                causes.append(
                    RankedCause(
                        int(series.points[-1][1]),
                        series.labels.get("cause_kind", ""),
                        cause,
                        shares.get(cause),
                    )
                )
        if not causes and labels.get("cause"):
            causes.append(
                RankedCause(1, labels.get("cause_kind", ""), labels["cause"], None)
            )
        return causes

    def _plot(
        self, alert: Mapping[str, Any] | None, title: str, missing: list[str]
    ) -> bytes | None:
        if self._query is None:
            missing.append("plot: the receiver has no Prometheus to read series from")
            return None
        labels = alert["labels"] if alert else {}
        if not labels.get("query") or not labels.get("instance"):
            missing.append("plot: the alert names no detector query and instance")
            return None
        matchers = {"query": labels["query"], "instance": labels["instance"]}
        if labels.get("gpu"):
            matchers["gpu"] = labels["gpu"]
        parts = {
            part: self._fetch(f"aiops_anomaly_{part}", matchers, missing)
            for part in (
                "observed_value",
                "expected_lower",
                "expected_upper",
                "expected_value",
            )
        }
        observed = parts["observed_value"]
        if not observed or not observed[0].points:
            missing.append(
                f"plot: Prometheus has no aiops_anomaly_observed_value for "
                f"{labels['query']} on {labels['instance']} in the window"
            )
            return None
        start = _unix(alert.get("starts_at", "")) if alert else None
        marks = [(start, "alert start")] if start else []
        return band_plot(
            title,
            observed[0].points,
            _first(parts["expected_lower"]),
            _first(parts["expected_upper"]),
            _first(parts["expected_value"]),
            marks,
        )

    def _check_gone(self, labels: Mapping[str, str], missing: list[str]) -> None:
        command, user, instance = (
            labels.get("command"),
            labels.get("user"),
            labels.get("instance"),
        )
        if not (command and instance):
            return
        matchers = {"instance": instance, "command": command}
        if user:
            matchers["user"] = user
        series = self._fetch("aiops_process_group_processes", matchers, missing)
        now = self._clock()
        if not any(s.points and s.points[-1][0] >= now - GONE_SECONDS for s in series):
            missing.append(
                f"the cause's processes ({command}, user {user or '?'}) are no "
                f"longer reported on {instance}: they exited before this report"
            )

    def _fetch(
        self, metric: str, matchers: Mapping[str, str], missing: list[str]
    ) -> list[_Series]:
        assert self._query is not None
        end = self._clock()
        start = end - LEAD_SECONDS - 2 * STEP_SECONDS
        inner = ",".join(f"{k}={_quote(v)}" for k, v in sorted(matchers.items()))
        try:
            return list(self._query(f"{metric}{{{inner}}}", start, end, STEP_SECONDS))
        except Exception as exc:  # an edge: any client fault means no data
            log.warning("report query failed metric=%s error=%s", metric, exc)
            missing.append(f"{metric}: Prometheus query failed ({type(exc).__name__})")
            return []

    def _latest(
        self, metric: str, matchers: Mapping[str, str], missing: list[str]
    ) -> list[_Series]:
        return [s for s in self._fetch(metric, matchers, missing) if s.points]

    def _timeline(
        self, notification: Mapping[str, Any]
    ) -> tuple[list[tuple[str, str]], list[str]]:
        events: list[tuple[str, str]] = []
        rows = self._store.query(
            "SELECT id, status, received_at FROM notifications"
            " WHERE group_key = ? AND id <= ? ORDER BY id",
            [notification["group_key"], notification["id"]],
        )
        ids = [row["id"] for row in rows]
        for row in rows:
            events.append(
                (row["received_at"], f"notification {row['id']}: {row['status']}")
            )
        marks = ",".join("?" * len(ids))
        for row in self._store.query(
            "SELECT labels, status, starts_at FROM alerts"
            f" WHERE notification_id IN ({marks})",
            ids,
        ):
            name = json.loads(row["labels"]).get("alertname", "?")
            events.append((row["starts_at"], f"{name} {row['status']} since"))
        taken = []
        for row in self._store.query(
            f"SELECT * FROM actions WHERE notification_id IN ({marks}) ORDER BY id", ids
        ):
            text = (
                f"{row['kind']} {row['action']} ({row['mode']}) on "
                f"{row['target'] or 'its target'}: {row['result']}"
                + (f", {row['reason']}" if row["reason"] else "")
            )
            taken.append(text)
            events.append((row["updated_at"], f"action {row['id']}: {text}"))
        events.sort(key=lambda e: e[0])
        return events, taken


def _decoded(row: Any) -> dict[str, Any]:
    record = dict(row)
    record["labels"] = json.loads(record["labels"])
    record["annotations"] = json.loads(record["annotations"])
    return record


def _main_alert(alerts: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    firing = [a for a in alerts if a["status"] == "firing"] or list(alerts)
    with_cause = [a for a in firing if a["labels"].get("cause")]
    with_query = [a for a in firing if a["labels"].get("query")]
    chosen = with_cause or with_query or firing
    return chosen[0] if chosen else None


def _diagnosis(
    alerts: Sequence[Mapping[str, Any]], causes: Sequence[RankedCause]
) -> tuple[list[str], list[str]]:
    diagnosis, recommended = [], []
    if causes:
        top = causes[0]
        share = f", {top.share:.0%} of the change" if top.share is not None else ""
        diagnosis.append(f"Most likely cause: {top.kind} {top.name}{share}.")
    for alert in alerts:
        labels, notes = alert["labels"], alert["annotations"]
        fault = labels.get("fault_class") or labels.get("action")
        if fault in FAULT_CLASS_WORDS:
            escalated = (
                " (escalated: it came back after its remedy)"
                if labels.get("escalated") == "true"
                else ""
            )
            diagnosis.append(f"GPU {labels.get('gpu', '?')}: {fault}{escalated}.")
            recommended.append(
                f"GPU {labels.get('gpu', '?')}: {FAULT_CLASS_WORDS[fault]}."
            )
        if notes.get("description"):
            diagnosis.append(f"{labels.get('alertname', '?')}: {notes['description']}")
        if notes.get("runbook_url"):
            recommended.append(f"Follow {notes['runbook_url']}.")
    return diagnosis, list(dict.fromkeys(recommended))


def _first(series: Sequence[_Series]) -> Sequence[tuple[float, float]]:
    return series[0].points if series else ()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unix(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
