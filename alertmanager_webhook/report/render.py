"""Renders a Report as Markdown and as one self-contained HTML page (the plot
inlined as a data: URI, so that the page survives being saved or mailed)."""

from __future__ import annotations

import base64
from html import escape

from alertmanager_webhook.report.content import Report

# Marks each image with its decoded width once the page has loaded, so that a
# headless browser's DOM dump shows whether the plot rendered.
_LOADED = (
    "<script>window.addEventListener('load',function(){"
    "document.querySelectorAll('img').forEach(function(i){"
    "i.setAttribute('data-natural-width',String(i.naturalWidth));});});"
    "</script>"
)
STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:1em auto;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
    ".missing{color:#a40}"
)


def markdown(report: Report) -> str:
    lines = [
        f"# Fault report: {report.title}",
        "",
        f"Incident {report.incident_id}, {report.status}, "
        f"received {report.received_at}.",
        "",
        "## Ranked causes",
        "",
    ]
    if report.causes:
        lines += ["| rank | kind | cause | share |", "|---|---|---|---|"]
        lines += [
            f"| {c.rank} | {c.kind} | {_md(c.name)} | {_share(c.share)} |"
            for c in report.causes
        ]
    else:
        lines.append("No cause could be ranked.")
    lines += ["", "## Diagnosis", ""]
    lines += [f"- {_md(d)}" for d in report.diagnosis] or ["- none"]
    lines += ["", "## Actions recommended", ""]
    lines += [f"- {_md(r)}" for r in report.recommended] or ["- none"]
    lines += ["", "## Actions taken", ""]
    lines += [f"- {_md(t)}" for t in report.taken] or ["- none"]
    lines += ["", "## Timeline", ""]
    lines += [f"- {when}: {_md(what)}" for when, what in report.timeline]
    lines += ["", "## Plot", ""]
    lines.append(
        "![anomaly and expected band](plot.png)" if report.plot else "No plot."
    )
    if report.missing:
        lines += ["", "## Missing data", ""]
        lines += [f"- {_md(m)}" for m in report.missing]
    return "\n".join(lines) + "\n"


def html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Fault report: {escape(report.title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Fault report: {escape(report.title)}</h1>",
        f"<p>Incident {report.incident_id}, {escape(report.status)}, received "
        f"{escape(report.received_at)}.</p>",
    ]
    if report.plot:
        data = base64.b64encode(report.plot).decode()
        parts.append(
            f"<img id='plot' alt='anomaly and expected band' "
            f"src='data:image/png;base64,{data}'>"
        )
    else:
        parts.append("<p class='missing'>No plot.</p>")
    parts.append("<h2>Ranked causes</h2>")
    if report.causes:
        parts.append(
            "<table id='causes'><tr><th>rank</th><th>kind</th><th>cause</th>"
            "<th>share</th></tr>"
        )
        parts += [
            f"<tr><td>{c.rank}</td><td>{escape(c.kind)}</td>"
            f"<td class='cause'>{escape(c.name)}</td><td>{_share(c.share)}</td></tr>"
            for c in report.causes
        ]
        parts.append("</table>")
    else:
        parts.append("<p>No cause could be ranked.</p>")
    for heading, items in (
        ("Diagnosis", report.diagnosis),
        ("Actions recommended", report.recommended),
        ("Actions taken", report.taken),
    ):
        parts.append(f"<h2>{heading}</h2>{_list(items)}")
    parts.append("<h2>Timeline</h2><table>")
    parts += [
        f"<tr><td>{escape(when)}</td><td>{escape(what)}</td></tr>"
        for when, what in report.timeline
    ]
    parts.append("</table>")
    if report.missing:
        parts.append(
            f"<h2>Missing data</h2><div class='missing'>{_list(report.missing)}</div>"
        )
    parts.append(f"{_LOADED}</body></html>")
    return "\n".join(parts)


def _list(items: tuple[str, ...]) -> str:
    if not items:
        return "<p>none</p>"
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


def _share(share: float | None) -> str:
    return "?" if share is None else f"{share:.0%}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
