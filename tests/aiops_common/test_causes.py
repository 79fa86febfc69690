from __future__ import annotations

import pytest
import requests
import urllib3

from aiops_common.causes import host_port, innermost, short_cause


def _raised_from(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except Exception as caught:
        return caught


def test_a_wrapped_refusal_is_told_by_its_innermost_cause() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    exc = _raised_from(
        requests.ConnectionError(
            "HTTPConnectionPool(host='127.0.0.1', port=9090): Max retries "
            "exceeded with url: /api/v1/query?query=up%7Bjob%3D%22a%22%7D"
        ),
        refused,
    )

    assert innermost(exc) is refused
    assert short_cause(exc) == "connection refused"


def test_a_timeout_says_at_which_step() -> None:
    read = _raised_from(
        urllib3.exceptions.ReadTimeoutError(None, "/api", "Read timed out."),
        TimeoutError("timed out"),
    )
    outer = _raised_from(requests.ReadTimeout("Read timed out. (read timeout=5)"), read)

    assert short_cause(outer) == "read timed out"
    assert short_cause(TimeoutError("timed out")) == "request timed out"


def test_an_error_status_is_told_by_its_code_without_the_url() -> None:
    response = requests.Response()
    response.status_code, response.reason = 503, "Service Unavailable"
    response.url = "http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22a%22%7D"
    exc = requests.HTTPError("503 Server Error: ... for url: ...", response=response)

    assert short_cause(exc) == "HTTP 503 Service Unavailable"


def test_a_long_cause_is_cut_to_the_limit() -> None:
    text = short_cause(ValueError("x" * 500), limit=40)

    assert len(text) == 40
    assert text.endswith("...")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:9090/api/v1/query?query=up", "127.0.0.1:9090"),
        ("https://user:secret@prom.example/prometheus", "prom.example:443"),
        ("http://[::1]:9090", "[::1]:9090"),
        ("https://kubernetes.default.svc", "kubernetes.default.svc:443"),
    ],
)
def test_host_port_leaves_out_path_query_and_credentials(
    url: str, expected: str
) -> None:
    assert host_port(url) == expected
