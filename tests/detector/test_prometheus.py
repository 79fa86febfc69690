from __future__ import annotations

import logging
import threading
import time

import pytest
import requests

from detector.prometheus import (
    MAX_STEPS_PER_QUERY,
    BadResponse,
    PrometheusClient,
    PrometheusHTTPError,
    PrometheusUnreachable,
    QueryTimeout,
)
from tests.detector.fakeprom import (
    PROMETHEUS_MAX_POINTS,
    FakePrometheus,
    error_reply,
    json_reply,
)

T0 = 1_700_000_000.0


@pytest.fixture
def client(fake_prometheus: FakePrometheus):
    with requests.Session() as session:
        yield PrometheusClient(fake_prometheus.url, session, timeout=5.0)


def test_matrix_is_parsed_without_name_and_non_finite_values(
    fake_prometheus: FakePrometheus, client: PrometheusClient
) -> None:
    values = {T0: 1.5, T0 + 15: float("nan"), T0 + 30: float("inf"), T0 + 45: -2.0}
    fake_prometheus.series = [
        ({"__name__": "gpu_temp", "gpu": "0"}, values.get),
    ]

    (series,) = client.query_range("gpu_temp", T0, T0 + 45, 15)

    assert series.labels == {"gpu": "0"}
    assert series.points == [(T0, 1.5), (T0 + 45, -2.0)]
    form = fake_prometheus.requests[0]
    assert form["query"] == "gpu_temp"
    assert float(form["step"]) == 15.0


def test_long_ranges_are_split_into_contiguous_chunks(
    fake_prometheus: FakePrometheus, client: PrometheusClient
) -> None:
    steps = 2 * MAX_STEPS_PER_QUERY + 500
    fake_prometheus.series = [({"gpu": "0"}, lambda t: t - T0)]

    (series,) = client.query_range("x", T0, T0 + (steps - 1) * 15, 15)

    asked = [(float(f["start"]), float(f["end"])) for f in fake_prometheus.requests]
    assert len(asked) == 3
    for start, end in asked:
        assert (end - start) / 15 + 1 <= MAX_STEPS_PER_QUERY <= PROMETHEUS_MAX_POINTS
    for (_, end), (next_start, _) in zip(asked, asked[1:], strict=False):
        assert next_start == end + 15
    assert asked[0][0] == T0 and asked[-1][1] == T0 + (steps - 1) * 15
    assert [v for _, v in series.points] == [i * 15.0 for i in range(steps)]


def test_an_empty_range_asks_nothing(
    fake_prometheus: FakePrometheus, client: PrometheusClient
) -> None:
    assert client.query_range("x", T0, T0 - 15, 15) == []
    assert fake_prometheus.requests == []


def test_bad_query_carries_prometheus_message(
    fake_prometheus: FakePrometheus, client: PrometheusClient
) -> None:
    fake_prometheus.responder = lambda form: error_reply(
        400, "bad_data", 'parse error: unexpected "}"'
    )

    with pytest.raises(PrometheusHTTPError) as caught:
        client.query_range("up}", T0, T0, 15)

    assert caught.value.status == 400
    assert caught.value.message == 'parse error: unexpected "}"'
    assert not caught.value.server_side


def test_server_errors_are_marked_server_side(
    fake_prometheus: FakePrometheus, client: PrometheusClient
) -> None:
    fake_prometheus.responder = lambda form: (500, b"<html>oops</html>")

    with pytest.raises(PrometheusHTTPError) as caught:
        client.query_range("up", T0, T0, 15)

    assert caught.value.status == 500
    assert caught.value.server_side


@pytest.mark.parametrize(
    "reply",
    [
        (200, b"this is not json"),
        (200, b"[1, 2, 3]"),
        json_reply(200, {"status": "success"}),
        json_reply(200, {"status": "success", "data": {"resultType": "vector"}}),
        json_reply(
            200,
            {
                "status": "success",
                "data": {"resultType": "matrix", "result": [{"values": []}]},
            },
        ),
        json_reply(
            200,
            {
                "status": "success",
                "data": {
                    "resultType": "matrix",
                    "result": [{"metric": {}, "values": [[T0, "many"]]}],
                },
            },
        ),
    ],
)
def test_garbage_is_a_bad_response(
    fake_prometheus: FakePrometheus, client: PrometheusClient, reply
) -> None:
    fake_prometheus.responder = lambda form: reply

    with pytest.raises(BadResponse):
        client.query_range("up", T0, T0, 15)


def test_a_closed_port_is_unreachable() -> None:
    fake = FakePrometheus()
    url = fake.url
    fake.close()

    with requests.Session() as session:
        client = PrometheusClient(url, session, timeout=5.0)
        with pytest.raises(PrometheusUnreachable) as caught:
            client.query_range("up", T0, T0, 15)

    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_a_slow_answer_is_a_query_timeout(fake_prometheus: FakePrometheus) -> None:
    answered = threading.Event()

    def slow(form):
        # Holds the answer until the test is over; the client gives up first.
        fake_prometheus.release.wait(timeout=10)
        answered.set()
        return error_reply(503, "timeout", "too late")

    fake_prometheus.responder = slow

    with requests.Session() as session:
        client = PrometheusClient(fake_prometheus.url, session, timeout=0.2)
        with pytest.raises(QueryTimeout):
            client.query_range("up", T0, T0, 15)

    assert not answered.is_set()


def test_an_answer_that_trickles_in_is_a_query_timeout(
    fake_prometheus: FakePrometheus,
) -> None:
    # Every byte comes well within the read timeout, the whole answer (some
    # hundreds of bytes, one each 20 ms) far past the deadline.
    values = {T0 + i * 15: float(i) for i in range(20)}
    fake_prometheus.series = [({"gpu": "0"}, values.get)]
    fake_prometheus.trickle_seconds = 0.02

    with requests.Session() as session:
        client = PrometheusClient(fake_prometheus.url, session, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(QueryTimeout, match="not complete in 0.5s"):
            client.query_range("up", T0, T0 + 19 * 15, 15)

    assert time.monotonic() - started < 2.0


def test_headers_that_trickle_in_are_a_query_timeout(
    fake_prometheus: FakePrometheus,
) -> None:
    # Every byte of the status line and headers (some 70, one each 100 ms) comes
    # well within the read timeout; all of them, far past the deadline.
    fake_prometheus.series = [({"gpu": "0"}, lambda t: 1.0)]
    fake_prometheus.trickle_seconds = 0.1
    fake_prometheus.trickle_headers = True

    with requests.Session() as session:
        client = PrometheusClient(fake_prometheus.url, session, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(QueryTimeout, match="no answer in 0.5s"):
            client.query_range("up", T0, T0, 15)

    assert time.monotonic() - started < 1.5


def _warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_standing_warning_is_logged_once_per_query(
    fake_prometheus: FakePrometheus,
    client: PrometheusClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_prometheus.series = [({"gpu": "0"}, lambda t: 1.0)]
    fake_prometheus.warnings = ["results truncated due to limit"]

    with caplog.at_level(logging.WARNING, logger="detector.prometheus"):
        for _ in range(3):
            client.query_range("up", T0, T0, 15)
        client.query_range("down", T0, T0, 15)
        fake_prometheus.warnings = ["lookback too short"]
        client.query_range("up", T0, T0, 15)

    assert _warned(caplog) == [
        "prometheus warned query='up' warning='results truncated due to limit'",
        "prometheus warned query='down' warning='results truncated due to limit'",
        "prometheus warned query='up' warning='lookback too short'",
    ]
