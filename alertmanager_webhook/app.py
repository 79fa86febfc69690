"""The receiver's HTTP API: Flask routes over the store, planner and metrics.

Bad input is answered 4xx and never 5xx, because Alertmanager retries 5xx; a
database failure is answered 503 for exactly that reason.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from alertmanager_webhook.actions import PlannedAction
from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.payload import PayloadError, parse_body
from alertmanager_webhook.policy import Planner
from alertmanager_webhook.store import Store, StoreError, dedupe_key

log = logging.getLogger(__name__)

Answer = Response | tuple[Response, int]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def create_app(
    config: WebhookConfig,
    store: Store,
    *,
    token: str,
    planner: Planner | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> Flask:
    """Build the WSGI app; `token` is the bearer token every API call must carry."""
    if not token:
        raise ValueError("create_app needs a non-empty bearer token")
    planner = planner or Planner(config.policies, config.mode)
    metrics = WebhookMetrics(registry or CollectorRegistry(), config.mode)
    expected = token.encode()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes

    def authorized() -> bool:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Bytes, because compare_digest refuses str with non-ASCII characters.
        return hmac.compare_digest(presented.strip().encode(), expected)

    def unauthorized() -> Response:
        metrics.auth_failures.inc()
        log.warning("unauthorized path=%s remote=%s", request.path, request.remote_addr)
        response = jsonify(error="missing or invalid bearer token")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="aiops-webhook"'
        return response

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
                "notification truncated group_key=%s truncated_alerts=%d",
                notification.group_key,
                notification.truncated_alerts,
            )

        key = dedupe_key(notification)
        actions: list[PlannedAction] = []
        notification_id = None
        try:
            # Checked first so that a resend costs no process scan; save() still
            # catches the race of two deliveries arriving together.
            if not store.is_known(key):
                actions = planner.plan(notification)
                notification_id = store.save(notification, key, actions)
        except StoreError as exc:
            metrics.notifications.labels("failed").inc()
            return unavailable(exc)

        if notification_id is None:
            metrics.notifications.labels("duplicate").inc()
            log.info("duplicate notification group_key=%s", notification.group_key)
            return jsonify(status="duplicate")

        metrics.notifications.labels("accepted").inc()
        metrics.last_accepted.set(wall_clock())
        for alert in notification.alerts:
            metrics.alerts.labels(alert.status).inc()
        for action in actions:
            metrics.actions.labels(action.action, action.mode, action.result).inc()
        log.info(
            "notification accepted id=%d group_key=%s status=%s alerts=%d actions=%d",
            notification_id,
            notification.group_key,
            notification.status,
            len(notification.alerts),
            len(actions),
        )
        return jsonify(
            status="accepted", alerts=len(notification.alerts), actions=len(actions)
        )

    @app.get("/api/v1/alerts")
    def recent_alerts() -> Answer:
        return recent(store.recent_alerts)

    @app.get("/api/v1/actions")
    def recent_actions() -> Answer:
        return recent(store.recent_actions)

    def recent(read: Callable[[int], list[dict[str, Any]]]) -> Answer:
        if not authorized():
            return unauthorized()

        raw = request.args.get("limit", str(DEFAULT_LIMIT))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            return jsonify(error=f"limit: expected 1 to {MAX_LIMIT}, got {raw!r}"), 400

        try:
            records = read(int(raw))
        except StoreError as exc:
            return unavailable(exc)
        return jsonify(status="success", data=records)

    @app.get("/-/healthy")
    def healthy() -> Response:
        return Response("Healthy.\n", mimetype="text/plain")

    @app.get("/metrics")
    def metrics_page() -> Response:
        page = generate_latest(metrics.registry)
        return Response(page, content_type=CONTENT_TYPE_LATEST)

    return app
