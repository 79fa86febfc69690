"""The HTTP endpoint: /metrics from a registry and /-/healthy, in a thread."""

from __future__ import annotations

import logging
import socket
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger(__name__)


class _Server(ThreadingMixIn, WSGIServer):
    # A slow scraper must not hold up shutdown.
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        # wsgiref writes every request to stderr; per-request lines are DEBUG.
        log.debug("http request " + format, *args)


class WebServer:
    """Serves the detector's endpoints until stop() is called."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        metrics = make_wsgi_app(registry)

        def app(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path == "/metrics":
                return metrics(environ, start_response)
            if path == "/-/healthy":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"Healthy.\n"]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not found; try /metrics.\n"]

        server_class = _Server6 if ":" in host else _Server
        self._server = make_server(
            host, port, app, server_class=server_class, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="detector-web", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port, useful when 0 asked the system to choose."""
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
