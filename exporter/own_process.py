"""The exporter's own CPU, memory, start time and files under Prometheus'
standard process_* names, read from /proc/self at each scrape.

prometheus_client's ProcessCollector lists /proc/self/fd to count open files;
the exporter keeps thousands of /proc files open (see kept_files), and listing
them on every scrape would cost more than the rest of the scrape together.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.procfs import CLOCK_TICKS, PAGE_SIZE


class OwnProcess(Collector):
    """process_* metrics of this process; nothing where /proc is missing."""

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._boot = _boot_time(proc)

    def collect(self) -> Iterable[Metric]:
        try:
            with open(f"{self._proc}/self/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
            open_files = os.stat(f"{self._proc}/self/fd").st_size
            # Before Linux 6.2 the size is 0 and only a listing counts them.
            if not open_files:
                open_files = len(os.listdir(f"{self._proc}/self/fd"))
        except OSError:
            return []

        # Fields counted from state (field 3 in proc(5)).
        cpu = CounterMetricFamily(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            value=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
        )
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return [
            GaugeMetricFamily(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                value=int(fields[20]),
            ),
            GaugeMetricFamily(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                value=int(fields[21]) * PAGE_SIZE,
            ),
            GaugeMetricFamily(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                value=self._boot + int(fields[19]) / CLOCK_TICKS,
            ),
            cpu,
            GaugeMetricFamily(
                "process_open_fds", "Number of open file descriptors.", value=open_files
            ),
            GaugeMetricFamily(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                value=float("inf") if soft == resource.RLIM_INFINITY else soft,
            ),
        ]


def _boot_time(proc: str) -> float:
    try:
        with open(f"{proc}/stat", "rb") as stat:
            for line in stat:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0
