"""The reports table of the receiver's database: one rendered report per
incident (notification id), written once and read by the API."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    incident_id INTEGER PRIMARY KEY REFERENCES notifications (id),
    markdown TEXT NOT NULL,
    html TEXT NOT NULL,
    plot BLOB,
    created_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class StoredReport:
    incident_id: int
    markdown: str
    html: str
    plot: bytes | None
    created_at: str


def save(conn: sqlite3.Connection, report: StoredReport) -> None:
    """Insert the report unless one exists for the incident; raises sqlite3.Error."""
    conn.execute(
        "INSERT OR IGNORE INTO reports (incident_id, markdown, html, plot, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            report.incident_id,
            report.markdown,
            report.html,
            report.plot,
            report.created_at,
        ),
    )


def from_row(row: sqlite3.Row) -> StoredReport:
    return StoredReport(
        row["incident_id"], row["markdown"], row["html"], row["plot"], row["created_at"]
    )
