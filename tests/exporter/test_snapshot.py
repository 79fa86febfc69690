"""Snapshot and CollectionLoop: health series, staleness, failing and hanging
sources, all with events and injected clocks rather than sleeps."""

from __future__ import annotations

import logging
import threading

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from exporter.loop import CollectionLoop
from exporter.snapshot import Snapshot, Source
from tests.exporter.exposition import names, scrape, value

WAIT = 10.0


class Clock:
    def __init__(self, now=500.0):
        self.now = now

    def __call__(self):
        return self.now


def reading(name, number):
    return lambda: [GaugeMetricFamily(name, "A test reading.", value=number)]


def registry_for(snapshot):
    registry = CollectorRegistry()
    registry.register(snapshot)
    return registry


class Blocking:
    """A source that blocks until released; `entered` is set once it runs."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(WAIT), "test never released the source"
        return [GaugeMetricFamily("aiops_test_slow", "A slow reading.", value=7)]


@pytest.fixture
def blocking():
    source = Blocking()
    yield source
    source.release.set()


def test_before_any_collection_only_health_is_served():
    snapshot = Snapshot([Source("a", reading("aiops_test_a", 1))], 1.0, 60.0)

    parsed = scrape(registry_for(snapshot))

    assert value(parsed, "aiops_exporter_source_errors_total", source="a") == 0
    assert (
        value(
            parsed, "aiops_exporter_source_last_success_timestamp_seconds", source="a"
        )
        == 0
    )
    assert "aiops_test_a" not in names(parsed)
    assert "aiops_exporter_source_duration_seconds" not in names(parsed)


def test_stale_source_is_dropped():
    clock = Clock()
    snapshot = Snapshot(
        [
            Source("a", reading("aiops_test_a", 1)),
            Source("b", reading("aiops_test_b", 2)),
        ],
        timeout_seconds=1.0,
        stale_after_seconds=120.0,
        clock=clock,
        wall=lambda: 1_800_000_000.0,
    )
    registry = registry_for(snapshot)
    snapshot.refresh()

    clock.now += 120.0
    assert {"aiops_test_a", "aiops_test_b"} <= names(scrape(registry))

    clock.now += 0.5
    parsed = scrape(registry)
    assert "aiops_test_a" not in names(parsed)
    assert "aiops_test_b" not in names(parsed)
    assert (
        value(
            parsed, "aiops_exporter_source_last_success_timestamp_seconds", source="a"
        )
        == 1_800_000_000.0
    )


def test_failing_source_is_counted_and_keeps_its_last_data():
    clock = Clock()
    outcomes = [reading("aiops_test_a", 1), None]

    def flaky():
        outcome = outcomes.pop(0)
        if outcome is None:
            raise OSError("read /proc/stat: interrupted")
        return outcome()

    snapshot = Snapshot([Source("a", flaky)], 1.0, 120.0, clock=clock)
    registry = registry_for(snapshot)
    snapshot.refresh()
    clock.now += 30.0
    snapshot.refresh()

    parsed = scrape(registry)
    assert value(parsed, "aiops_exporter_source_errors_total", source="a") == 1
    assert value(parsed, "aiops_test_a") == 1

    clock.now += 91.0
    assert "aiops_test_a" not in names(scrape(registry))


def test_hanging_source_times_out_while_the_others_are_served(blocking):
    snapshot = Snapshot(
        [Source("fast", reading("aiops_test_fast", 3)), Source("slow", blocking)],
        timeout_seconds=0.05,
        stale_after_seconds=120.0,
    )
    registry = registry_for(snapshot)

    snapshot.refresh()
    parsed = scrape(registry)

    assert blocking.entered.is_set()
    assert value(parsed, "aiops_test_fast") == 3
    assert "aiops_test_slow" not in names(parsed)
    assert value(parsed, "aiops_exporter_source_errors_total", source="slow") == 1
    assert value(parsed, "aiops_exporter_source_errors_total", source="fast") == 0
    assert (
        value(parsed, "aiops_exporter_source_duration_seconds", source="slow") == 0.05
    )

    # Still hung: the cycle is skipped and counted, no second thread starts.
    snapshot.refresh()
    assert blocking.calls == 1
    assert (
        value(scrape(registry), "aiops_exporter_source_errors_total", source="slow")
        == 2
    )

    blocking.release.set()
    assert snapshot.join(WAIT)
    snapshot.refresh()
    parsed = scrape(registry)
    assert blocking.calls == 2
    assert value(parsed, "aiops_test_slow") == 7
    assert value(parsed, "aiops_exporter_source_errors_total", source="slow") == 2


def test_loop_collects_at_once_and_stops():
    collected = threading.Event()

    def source():
        collected.set()
        return []

    loop = CollectionLoop(Snapshot([Source("a", source)], 1.0, 7200.0), 3600.0)
    loop.start()
    try:
        assert collected.wait(WAIT)
    finally:
        assert loop.stop(WAIT)


def test_a_failing_source_warns_once_per_streak(caplog):
    outcomes = [OSError("boom"), OSError("boom"), None, OSError("again")]

    def flaky():
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return []

    snapshot = Snapshot([Source("a", flaky)], 1.0, 120.0)
    with caplog.at_level(logging.INFO, logger="exporter.snapshot"):
        for _ in range(4):
            snapshot.refresh()

    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert [m.split(" source=")[0] for m in messages] == [
        "source failed",
        "source recovered",
        "source failed",
    ]
