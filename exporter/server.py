"""The HTTP side: /metrics from the exporter's registry, /-/healthy and a link page.

Needs only the standard library's wsgiref and prometheus_client's WSGI app.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from aiops_common.address import parse_listen_address

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


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    # One thread per request, so a slow client cannot hold up the next scrape.
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # wsgiref writes one line per request to stderr; keep that at DEBUG.
        log.debug("http request %s", format % args)


def make_app(registry: CollectorRegistry) -> WsgiApp:
    """Route /metrics to the registry's exposition, plus / and /-/healthy."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]):
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/-/healthy":
            return _reply(start_response, "200 OK", "text/plain", b"Healthy\n")
        if path == "/":
            return _reply(start_response, "200 OK", "text/html", _INDEX)
        return _reply(start_response, "404 Not Found", "text/plain", b"Not Found\n")

    return app


class MetricsServer:
    """A threaded HTTP server bound at construction, serving from start()."""

    def __init__(self, listen_address: str, app: WsgiApp) -> None:
        host, port = parse_listen_address(listen_address)
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        self._server = make_server(
            host, port, app, server_class=server_class, handler_class=_Handler
        )
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
    start_response: Callable[..., Any], status: str, content_type: str, body: bytes
) -> list[bytes]:
    start_response(
        status,
        [
            ("Content-Type", f"{content_type}; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]
