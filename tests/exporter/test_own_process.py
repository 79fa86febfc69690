"""OwnProcess serves the names and values prometheus_client's ProcessCollector
does, without listing the exporter's open files."""

from __future__ import annotations

import os

import pytest
from prometheus_client import CollectorRegistry, ProcessCollector

from exporter.own_process import OwnProcess
from tests.exporter.exposition import scrape


def test_same_series_as_prometheus_clients_collector():
    theirs = CollectorRegistry()
    ProcessCollector(registry=theirs)
    ours = CollectorRegistry()
    ours.register(OwnProcess())

    expected, got = scrape(theirs), scrape(ours)

    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if key[0] == "process_open_fds":
            # Theirs counts the descriptor its own listing holds open.
            assert got[key] in (value - 1, value)
        elif key[0] == "process_cpu_seconds_total":
            assert got[key] == pytest.approx(value, abs=0.05)
        elif key[0] != "process_resident_memory_bytes":
            assert got[key] == pytest.approx(value)


def test_many_open_files_are_counted(tmp_path):
    before = scrape_one()
    files = [os.open(tmp_path, os.O_RDONLY) for _ in range(50)]
    try:
        during = scrape_one()
    finally:
        for fd in files:
            os.close(fd)

    assert during - before == 50


def test_without_proc_nothing_is_served(tmp_path):
    registry = CollectorRegistry()
    registry.register(OwnProcess(str(tmp_path)))

    assert scrape(registry) == {}


def scrape_one():
    registry = CollectorRegistry()
    registry.register(OwnProcess())
    return scrape(registry)[("process_open_fds", frozenset())]
