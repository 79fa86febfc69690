"""How the exporter declares a metric (Spec), and its own per-source health
series. Each source's metrics live in their own *_metrics module."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


@dataclass(frozen=True)
class Spec:
    """One metric's name, help string and label names."""

    name: str
    help: str
    labels: tuple[str, ...] = ()

    def gauge(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.help, labels=self.labels)

    def counter(self) -> CounterMetricFamily:
        # prometheus_client strips and re-appends _total itself; the spec keeps
        # the full name so that a grep for the exported name finds it here.
        return CounterMetricFamily(self.name, self.help, labels=self.labels)

    def single(self, value: float) -> GaugeMetricFamily:
        """An unlabelled gauge holding `value`."""
        return GaugeMetricFamily(self.name, self.help, value=value)


def non_empty(families: Sequence[Metric]) -> list[Metric]:
    """Drop families without samples, so a scrape shows no empty HELP blocks."""
    return [family for family in families if family.samples]


SOURCE_LAST_SUCCESS = Spec(
    "aiops_exporter_source_last_success_timestamp_seconds",
    "Unix time of a source's last successful collection; 0 before the first.",
    ("source",),
)
SOURCE_DURATION = Spec(
    "aiops_exporter_source_duration_seconds",
    "Seconds a source's last collection took; its time limit when it ran over.",
    ("source",),
)
SOURCE_ERRORS = Spec(
    "aiops_exporter_source_errors_total",
    "Collections of a source that failed, ran over their time limit, or were "
    "skipped because the previous one still ran.",
    ("source",),
)


AUTH_FAILURES = Spec(
    "aiops_exporter_auth_failures_total",
    "Requests refused for missing or wrong basic-auth credentials.",
)


class AuthFailures:
    """Counts requests refused by basic auth; a collector for /metrics.

    Repeated refusals are a security finding the detector's diagnosis reads.
    """

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def inc(self) -> None:
        with self._lock:
            self._count += 1

    def collect(self) -> Iterator[Metric]:
        family = AUTH_FAILURES.counter()
        family.add_metric([], self._count)
        yield family


def health_families(
    last_success: Iterable[tuple[str, float]],
    durations: Iterable[tuple[str, float]],
    errors: Iterable[tuple[str, int]],
) -> list[Metric]:
    """The exporter's own per-source health, given (source, value) pairs."""
    success, duration, failed = (
        SOURCE_LAST_SUCCESS.gauge(),
        SOURCE_DURATION.gauge(),
        SOURCE_ERRORS.counter(),
    )
    for source, value in last_success:
        success.add_metric([source], value)
    for source, value in durations:
        duration.add_metric([source], value)
    for source, count in errors:
        failed.add_metric([source], count)
    return [success, duration, failed]
