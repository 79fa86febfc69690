"""Reports as the API serves them: built on first request, stored with the
incident in the receiver's database, read back afterwards."""

from __future__ import annotations

import json

from alertmanager_webhook.report import render, storage
from alertmanager_webhook.report.content import ReportBuilder, ReportNotFound
from alertmanager_webhook.report.storage import StoredReport
from alertmanager_webhook.store import Store

__all__ = ["ReportNotFound", "Reports"]


class Reports:
    """Finds, builds and stores incident reports."""

    # TODO: a report is built inside the first request for it, so that request
    # waits on Prometheus (the client's timeout bounds it). Building it in the
    # worker once a notification is stored would take that wait off the API.

    def __init__(self, store: Store, builder: ReportBuilder | None = None) -> None:
        self._store = store
        self._builder = builder or ReportBuilder(store)

    def get(self, incident_id: int) -> StoredReport:
        """The stored report of an incident, built and stored on first use."""
        rows = self._store.query(
            "SELECT * FROM reports WHERE incident_id = ?", [incident_id]
        )
        if rows:
            return storage.from_row(rows[0])

        report = self._builder.build(incident_id)
        stored = StoredReport(
            incident_id,
            render.markdown(report),
            render.html(report),
            report.plot,
            self._store.now().isoformat(),
        )
        with self._store.transaction() as conn:
            storage.save(conn, stored)
        return stored

    def latest(self, labels: dict[str, str]) -> int:
        """The newest incident with an alert carrying all of `labels`."""
        rows = self._store.query(
            "SELECT notification_id, labels FROM alerts ORDER BY id DESC LIMIT 5000"
        )
        for row in rows:
            alert = json.loads(row["labels"])
            if all(alert.get(k) == v for k, v in labels.items()):
                return int(row["notification_id"])
        raise ReportNotFound(f"no incident with labels {labels!r}")
