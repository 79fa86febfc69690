"""The HTTP side: /metrics from the exporter's registry, /-/healthy and a link page,
over HTTP or TLS, with basic auth when the web config asks for it.

Needs only the standard library's wsgiref and ssl.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from aiops_common.address import parse_listen_address
from exporter.web_config import BasicAuth

log = logging.getLogger(__name__)

_INDEX = b"""<!DOCTYPE html>
<html>
<head><title>aiops exporter</title></head>
<body>
<h1>aiops exporter</h1>
<p>Host, process-group and GPU metrics for prom-aiops.</p>
<ul>
<li><a href="metrics">metrics</a></li>
<li><a href="-/healthy">health</a></li>
</ul>
</body>
</html>
"""

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# The Prometheus text format 0.0.4, which every Prometheus version reads.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"


# A client that connects and then says nothing gives up its thread after this.
_CLIENT_TIMEOUT_SECONDS = 30


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    # One thread per request, so a slow client cannot hold up the next scrape.
    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = self.socket.accept()
        if self.ssl_context is not None:
            # The handshake waits for the request's own thread: done here, in
            # the accepting thread, one stalled client would block all others.
            conn = self.ssl_context.wrap_socket(
                conn, server_side=True, do_handshake_on_connect=False
            )
        return conn, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A failed handshake or a dropped connection is the client's business;
        # socketserver would print a traceback to stderr for each.
        log.debug("http connection failed client=%s", client_address, exc_info=True)


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _Handler(WSGIRequestHandler):
    timeout = _CLIENT_TIMEOUT_SECONDS

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        # wsgiref writes one line per request to stderr; keep that at DEBUG.
        log.debug("http request %s", format % args)


def make_app(
    metrics: Callable[[], bytes],
    auth: BasicAuth | None = None,
    headers: Mapping[str, str] | None = None,
    on_auth_failure: Callable[[], None] | None = None,
) -> WsgiApp:
    """Route /metrics to `metrics` (the exposition's bytes), plus / and /-/healthy.

    With `auth`, every path asks for basic auth first; `headers` are added to
    every response (http_server_config.headers of the web config).
    """
    extra = list((headers or {}).items())

    def app(environ: dict[str, Any], start_response: Callable[..., Any]):
        if extra:
            start_response = _with_headers(start_response, extra)
        if auth is not None and not auth.allows(environ.get("HTTP_AUTHORIZATION")):
            if on_auth_failure is not None:
                on_auth_failure()
            return _reply(
                start_response,
                "401 Unauthorized",
                _TEXT,
                b"Unauthorized\n",
                [("WWW-Authenticate", 'Basic realm="aiops-exporter"')],
            )
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            # Not compressed: gzip would cost each scrape more CPU than the
            # rest of serving it, for a few hundred kilobytes on loopback or LAN.
            return _reply(start_response, "200 OK", METRICS_CONTENT_TYPE, metrics())
        if path == "/-/healthy":
            return _reply(start_response, "200 OK", _TEXT, b"Healthy\n")
        if path == "/":
            return _reply(start_response, "200 OK", _HTML, _INDEX)
        return _reply(start_response, "404 Not Found", _TEXT, b"Not Found\n")

    return app


class MetricsServer:
    """A threaded HTTP server bound at construction, serving from start()."""

    def __init__(
        self,
        listen_address: str,
        app: WsgiApp,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        host, port = parse_listen_address(listen_address)
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        self._server = make_server(
            host, port, app, server_class=server_class, handler_class=_Handler
        )
        self._server.ssl_context = ssl_context
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port; the port is the real one when 0 was asked."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve requests in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aiops-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close the socket and wait for the serving thread."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def _reply(
    start_response: Callable[..., Any],
    status: str,
    content_type: str,
    body: bytes,
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            *headers,
        ],
    )
    return [body]


def _with_headers(
    start_response: Callable[..., Any], extra: list[tuple[str, str]]
) -> Callable[..., Any]:
    def wrapped(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
        return start_response(status, [*headers, *extra], *args)

    return wrapped
