"""Renders metric families or a registry to the text format and parses it back,
so that tests assert on what a scrape would really see."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


class _Fixed:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def registry_of(families: Iterable[Metric]) -> CollectorRegistry:
    """A fresh registry serving exactly `families`."""
    registry = CollectorRegistry()
    registry.register(_Fixed(families))
    return registry


def parse(text: str) -> Series:
    """(name, labels) -> value for every sample in a text exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(registry: CollectorRegistry) -> Series:
    """What a scrape of `registry` returns, parsed."""
    return parse(generate_latest(registry).decode())


def series(families: Iterable[Metric]) -> Series:
    """What a scrape of just `families` returns, parsed."""
    return scrape(registry_of(families))


def value(parsed: Series, metric: str, /, **labels: str) -> float | None:
    """The value of one series, or None when it is absent."""
    return parsed.get((metric, frozenset(labels.items())))


def names(parsed: Series) -> set[str]:
    """The metric names that have at least one series."""
    return {name for name, _ in parsed}
