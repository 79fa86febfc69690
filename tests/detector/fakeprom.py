"""A fake Prometheus HTTP API on 127.0.0.1 for tests, serving what a test sets."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from tests.ports import on_first_free_port

# Prometheus refuses range queries that would return more points per series.
PROMETHEUS_MAX_POINTS = 11_000

# A reply is (HTTP status, body bytes); a responder builds one from the form.
Reply = tuple[int, bytes]
Responder = Callable[[dict[str, str]], Reply]
ValueAt = Callable[[float], float | None]


def loopback_server(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server on 127.0.0.1, on a port tests may use (tests/ports.py)."""
    return on_first_free_port(
        lambda port: ThreadingHTTPServer(("127.0.0.1", port), handler)
    )


def json_reply(status: int, body: object) -> Reply:
    return status, json.dumps(body).encode()


def error_reply(status: int, error_type: str, message: str) -> Reply:
    body = {"status": "error", "errorType": error_type, "error": message}
    return json_reply(status, body)


def sample_text(value: float) -> str:
    """Prometheus' JSON spelling of a sample value."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class FakePrometheus:
    """Answers /api/v1/query_range from `series`, or from `responder` if set."""

    def __init__(self) -> None:
        self.series: list[tuple[dict[str, str], ValueAt]] = []
        self.responder: Responder | None = None
        self.warnings: list[str] = []
        self.requests: list[dict[str, str]] = []
        self.release = threading.Event()
        # Seconds between the bytes of a body sent one at a time, as a slow
        # proxy might; None sends it at once.
        self.trickle_seconds: float | None = None
        # With trickle_seconds, the status line and headers trickle too.
        self.trickle_headers = False

        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urlsplit(self.path).path == "/-/ready":
                    self._send(200, b"Ready.\n")
                else:
                    self._send(404, b"not found")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                if urlsplit(self.path).path != "/api/v1/query_range":
                    self._send(404, b"not found")
                    return
                fake.requests.append(form)
                self._send(*(fake.responder or fake.matrix)(form))

            def _send(self, status: int, body: bytes) -> None:
                if fake.trickle_seconds is not None and fake.trickle_headers:
                    # By hand: send_header keeps the headers for end_headers
                    # to send at once.
                    body = self._head(status, body) + body
                else:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                try:
                    if fake.trickle_seconds is None:
                        self.wfile.write(body)
                    else:
                        self._trickle(body, fake.trickle_seconds)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up first, as the timeout tests make it.
                    pass

            def _head(self, status: int, body: bytes) -> bytes:
                return (
                    f"{self.protocol_version} {status} {HTTPStatus(status).phrase}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()

            def _trickle(self, body: bytes, seconds: float) -> None:
                for index in range(len(body)):
                    # release, set when the test ends, also ends the trickle.
                    if fake.release.wait(timeout=seconds):
                        return
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = loopback_server(Handler)
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown, once per test, quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakePrometheus:
        self._thread.start()
        return self

    def close(self) -> None:
        self.release.set()
        # shutdown() waits for serve_forever(), so only a started server may ask.
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def matrix(self, form: dict[str, str]) -> Reply:
        """Evaluate every series on the request's grid, like a range query."""
        start, end, step = (float(form[k]) for k in ("start", "end", "step"))
        count = math.floor((end - start) / step + 1e-9) + 1
        if count > PROMETHEUS_MAX_POINTS:
            # Prometheus' own refusal, word for word.
            return error_reply(
                400,
                "bad_data",
                "exceeded maximum resolution of 11,000 points per timeseries. "
                "Try decreasing the query resolution (?step=XX)",
            )
        grid = [start + i * step for i in range(count)]

        result = []
        for labels, value_at in self.series:
            values = [
                [t, sample_text(v)] for t in grid if (v := value_at(t)) is not None
            ]
            if values:
                result.append({"metric": labels, "values": values})

        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        if self.warnings:
            body["warnings"] = self.warnings
        return json_reply(200, body)
