"""Fault reports read Prometheus' range API; a bad answer is a LookupError."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aiops_common.config import ConfigError, from_mapping
from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.report.prometheus import RangeQuery

from .conftest import free_port

MATRIX = {
    "status": "success",
    "data": {
        "resultType": "matrix",
        "result": [
            {
                "metric": {"__name__": "aiops_anomaly_observed_value", "query": "q"},
                "values": [[100, "1.5"], [160, "NaN"], [220, "2"]],
            }
        ],
    },
}


@pytest.fixture
def prometheus():
    answers = {"/api/v1/query_range": (200, json.dumps(MATRIX))}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            status, body = answers.get(self.path, (404, "not found"))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answers
    server.shutdown()
    server.server_close()


def test_matrix_becomes_series_without_nan(prometheus):
    url, _ = prometheus

    (series,) = RangeQuery(url)("aiops_anomaly_observed_value", 100, 220, 60)

    assert series.labels == {"query": "q"}
    assert series.points == [(100.0, 1.5), (220.0, 2.0)]


def test_an_error_answer_is_a_lookup_error_naming_the_query(prometheus):
    url, answers = prometheus
    answers["/api/v1/query_range"] = (400, '{"status":"error","error":"parse"}')

    with pytest.raises(LookupError, match="'up{'"):
        RangeQuery(url)("up{", 0, 60, 60)


def test_report_url_must_be_http():
    with pytest.raises(ConfigError, match="report_prometheus_url"):
        from_mapping(
            WebhookConfig,
            {"bearer_token": "t", "report_prometheus_url": "127.0.0.1:9090"},
        )
