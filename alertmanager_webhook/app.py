"""The receiver's HTTP API: Flask routes over the store, the queue and metrics.

Bad input is answered 4xx and never 5xx, because Alertmanager retries 5xx; a
database failure is answered 503 for exactly that reason. A notification is
answered 2xx only after it and its queued actions are on disk.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from alertmanager_webhook import listings
from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.credentials import (
    read_approvers,
    read_basic_password,
    read_token,
)
from alertmanager_webhook.intake import dedupe_key
from alertmanager_webhook.jobs import ApprovalError, Jobs
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.payload import PayloadError, parse_body
from alertmanager_webhook.policy import Planner
from alertmanager_webhook.report.service import ReportNotFound, Reports
from alertmanager_webhook.store import LARGEST_ID, Store
from alertmanager_webhook.store_errors import StoreError

log = logging.getLogger(__name__)

Answer = Response | tuple[Response, int]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class RowIdConverter(IntegerConverter):
    """`<rowid:name>`: an id no larger than SQLite's INTEGER, else not found.

    A larger number would reach the store and fail there with a 500.
    """

    def __init__(self, url_map: Any) -> None:
        super().__init__(url_map, max=LARGEST_ID)


@dataclass(frozen=True)
class Auth:
    """The credentials requests are checked against; never printed."""

    bearer: str = field(default="", repr=False)
    basic_user: str = ""
    basic_password: str = field(default="", repr=False)
    # Approver name -> token, for POST /api/v1/actions/<id>/approve.
    approvers: Mapping[str, str] = field(default_factory=dict, repr=False)
    insecure_no_auth: bool = False

    @classmethod
    def from_config(cls, config: WebhookConfig) -> Auth:
        return cls(
            bearer=read_token(config),
            basic_user=config.basic_auth_username,
            basic_password=read_basic_password(config),
            approvers=read_approvers(config),
            insecure_no_auth=config.insecure_no_auth,
        )

    def allows(self, header: str) -> bool:
        """Check an Authorization header against the bearer token or basic auth."""
        if not (self.bearer or self.basic_user):
            return self.insecure_no_auth
        scheme, _, presented = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self.bearer:
            return _same(presented.strip(), self.bearer)
        if scheme == "basic" and self.basic_user:
            try:
                decoded = base64.b64decode(presented.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, _, password = decoded.partition(":")
            # Both compared, always: the time taken tells nothing about which failed.
            user_ok = _same(user, self.basic_user)
            return _same(password, self.basic_password) and user_ok
        return False

    def approver(self, header: str) -> str | None:
        """Return the approver a bearer token belongs to, or None."""
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        found = None
        for name, token in self.approvers.items():
            if _same(presented.strip(), token):
                found = name
        return found


def _same(presented: str, expected: str) -> bool:
    # Bytes, because compare_digest refuses str with non-ASCII characters.
    return hmac.compare_digest(presented.encode(), expected.encode())


def create_app(
    config: WebhookConfig,
    store: Store,
    *,
    auth: Auth,
    notify: Callable[[], None] = lambda: None,
    metrics: WebhookMetrics | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    reports: Reports | None = None,
) -> Flask:
    """Build the WSGI app; `notify` wakes the worker when actions were queued."""
    if not (auth.bearer or auth.basic_user or auth.insecure_no_auth):
        raise ValueError("create_app needs credentials or insecure_no_auth")
    planner = Planner(config)
    jobs = Jobs(store)
    # Without a Prometheus to read from, reports say so and show what the
    # database holds.
    reports = reports or Reports(store)
    metrics = metrics or WebhookMetrics(registry or CollectorRegistry())

    app = Flask(__name__)
    app.url_map.converters["rowid"] = RowIdConverter
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes

    def unauthorized() -> Response:
        metrics.auth_failures.inc()
        log.warning("unauthorized path=%s remote=%s", request.path, request.remote_addr)
        response = jsonify(error="missing or invalid credentials")
        response.status_code = 401
        challenges = []
        if auth.bearer:
            challenges.append('Bearer realm="aiops-webhook"')
        if auth.basic_user:
            challenges.append('Basic realm="aiops-webhook"')
        response.headers["WWW-Authenticate"] = ", ".join(challenges) or "Bearer"
        return response

    def authorized() -> bool:
        return auth.allows(request.headers.get("Authorization", ""))

    def rejected(code: int, reason: str) -> tuple[Response, int]:
        metrics.notifications.labels("rejected").inc()
        log.warning("notification rejected code=%d reason=%r", code, reason)
        return jsonify(error=reason), code

    def unavailable(exc: StoreError) -> tuple[Response, int]:
        log.error("storage failed path=%s err=%s", request.path, exc)
        return jsonify(error="storage unavailable, retry later"), 503

    @app.before_request
    def start_timer() -> None:
        g.started = clock()

    @app.teardown_request
    def observe_duration(_exc: BaseException | None) -> None:
        # Label by route, not by path, so that the label set stays bounded.
        handler = request.url_rule.rule if request.url_rule else "other"
        if "started" in g:
            metrics.request_duration.labels(handler).observe(clock() - g.started)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.description), exc.code or 500

    @app.post("/webhook")
    def webhook() -> Answer:
        # Authenticate first: a stranger's body is neither parsed nor counted.
        if not authorized():
            return unauthorized()
        return receive()

    def receive() -> Answer:
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            return rejected(413, f"body larger than {config.max_body_bytes} bytes")

        try:
            notification = parse_body(body)
        except PayloadError as exc:
            return rejected(400, str(exc))

        if notification.truncated_alerts:
            log.warning(
                "notification truncated group_key=%r truncated_alerts=%d",
                notification.group_key,
                notification.truncated_alerts,
            )

        key = dedupe_key(notification)
        saved = None
        try:
            # A resend costs one read rather than a write transaction; save()
            # still catches two deliveries arriving together.
            if not store.is_known(key):
                saved = store.save(
                    notification,
                    key,
                    planner.intents(notification),
                    kept_policies=planner.kept_policies(),
                )
        except StoreError as exc:
            metrics.notifications.labels("failed").inc()
            return unavailable(exc)

        if saved is None:
            metrics.notifications.labels("duplicate").inc()
            log.info("duplicate notification group_key=%r", notification.group_key)
            return jsonify(status="duplicate")

        if any(result == "queued" for *_, result in saved.actions):
            notify()  # a notification that queued nothing costs the worker nothing
        metrics.notifications.labels("accepted").inc()
        metrics.last_accepted.set(wall_clock())
        for alert in notification.alerts:
            metrics.alerts.labels(alert.status).inc()
        for _, action, mode, result in saved.actions:
            if result != "queued":
                metrics.actions.labels(action, mode, result).inc()
        log.info(
            "notification accepted id=%d group_key=%r status=%s alerts=%d actions=%d",
            saved.notification_id,
            notification.group_key,
            notification.status,
            len(notification.alerts),
            len(saved.actions),
        )
        return jsonify(
            status="accepted",
            alerts=len(notification.alerts),
            actions=len(saved.actions),
        )

    @app.post("/api/v1/actions/<rowid:action_id>/approve")
    def approve(action_id: int) -> Answer:
        if not auth.approvers:
            return jsonify(error="approvals through the API are off"), 403
        approver = auth.approver(request.headers.get("Authorization", ""))
        if approver is None:
            return unauthorized()

        try:
            jobs.approve(action_id, f"api:{approver}")
        except ApprovalError as exc:
            return jsonify(error=str(exc)), exc.code
        except StoreError as exc:
            return unavailable(exc)
        notify()
        log.info("action approved id=%d by=%s", action_id, approver)
        return jsonify(status="approved", id=action_id)

    @app.get("/api/v1/alerts")
    def recent_alerts() -> Answer:
        return recent(listings.recent_alerts)

    @app.get("/api/v1/actions")
    def recent_actions() -> Answer:
        return recent(listings.recent_actions)

    def recent(read: Callable[[Store, int, int], list[dict[str, Any]]]) -> Answer:
        if not authorized():
            return unauthorized()

        raw = request.args.get("limit", str(DEFAULT_LIMIT))
        limit = whole_number(raw, MAX_LIMIT)
        if limit is None:
            return jsonify(error=f"limit: expected 1 to {MAX_LIMIT}, got {raw!r}"), 400
        # Pages back past the newest MAX_LIMIT: the rows before an id.
        raw = request.args.get("before", str(LARGEST_ID))
        before = whole_number(raw, LARGEST_ID)
        if before is None:
            return jsonify(
                error=f"before: expected an id from 1 to {LARGEST_ID}, got {raw!r}"
            ), 400

        try:
            records = read(store, limit, before)
        except StoreError as exc:
            return unavailable(exc)
        return jsonify(status="success", data=records)

    @app.get("/api/v1/incidents/<rowid:incident_id>/report.html")
    def report_html(incident_id: int) -> Answer:
        return report(incident_id, "html")

    @app.get("/api/v1/incidents/<rowid:incident_id>/report.md")
    def report_markdown(incident_id: int) -> Answer:
        return report(incident_id, "md")

    @app.get("/api/v1/incidents/<rowid:incident_id>/plot.png")
    def report_plot(incident_id: int) -> Answer:
        return report(incident_id, "png")

    # Alert rules cannot know an incident's id; their descriptions link here
    # with the labels they do know.
    @app.get("/api/v1/incidents/latest/report.<kind>")
    def latest_report(kind: str) -> Answer:
        if not authorized():
            return unauthorized()
        if kind not in ("html", "md"):
            return jsonify(error=f"report kind: expected html or md, got {kind!r}"), 404
        wanted = {
            k: v for k, v in request.args.items() if k in ("alertname", "instance")
        }
        if not wanted:
            return jsonify(error="give alertname and/or instance"), 400
        try:
            incident_id = reports.latest(wanted)
        except ReportNotFound as exc:
            return jsonify(error=str(exc)), 404
        except StoreError as exc:
            return unavailable(exc)
        return report(incident_id, kind)

    def report(incident_id: int, kind: str) -> Answer:
        if not authorized():
            return unauthorized()
        try:
            stored = reports.get(incident_id)
        except ReportNotFound as exc:
            return jsonify(error=str(exc)), 404
        except StoreError as exc:
            return unavailable(exc)
        if kind == "md":
            return Response(stored.markdown, mimetype="text/markdown")
        if kind == "png":
            if stored.plot is None:
                return jsonify(
                    error="this report has no plot; see its missing data"
                ), 404
            return Response(stored.plot, mimetype="image/png")
        response = Response(stored.html, mimetype="text/html")
        # The page is self-contained: nothing may load from elsewhere.
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'; "
            "script-src 'unsafe-inline'"
        )
        return response

    @app.get("/-/healthy")
    def healthy() -> Response:
        return Response("Healthy.\n", mimetype="text/plain")

    @app.get("/metrics")
    def metrics_page() -> Response:
        page = generate_latest(metrics.registry)
        return Response(page, content_type=CONTENT_TYPE_LATEST)

    return app


def whole_number(text: str, most: int) -> int | None:
    """`text` as a number from 1 to `most`, or None.

    ASCII digits only: str.isdigit() takes '²' and '３', which int() then
    refuses or reads as 3, and thousands of digits, which int() refuses.
    """
    if not re.fullmatch(r"[0-9]{1,19}", text):
        return None
    number = int(text)
    return number if 1 <= number <= most else None
