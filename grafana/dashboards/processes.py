"""Processes and containers: a host's CPU and memory, and its process groups
(command and user, container or unit) as the exporter groups them."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.dashboards.panels import (
    CORES,
    Board,
    instant,
    label_variable,
    q,
    stat,
    table,
)
from grafana.dashboards.panels import timeseries as ts
from grafana.dashboards.promql import increase, rate, sel

UID = "aiops-processes"
GROUP_LEGEND = "{{instance}} {{command}} ({{user}}) {{container_id}}{{unit}}"
TOP = 10


def h(metric: str, **matchers: str) -> str:
    """`metric` on the selected hosts."""
    return sel(metric, "instance", **matchers)


def top(expr: str) -> str:
    return f"topk({TOP}, {expr})"


def build() -> Dashboard:
    board = Board(
        UID,
        "prom-aiops / Processes and containers",
        "Who uses a host's CPU, memory, files and disks, by process group.",
        [
            label_variable(
                "instance", "Host", "aiops_host_logical_cpus", "Hosts to show."
            )
        ],
    )

    board.row("Host")
    board.add(
        stat(
            "CPUs",
            "Logical CPUs of the selected hosts.",
            CORES,
            instant(f"sum({h('aiops_host_logical_cpus')})"),
        ),
        stat(
            "Memory",
            "Physical memory of the selected hosts.",
            "bytes",
            instant(f"sum({h('aiops_host_memory_total_bytes')})"),
        ),
        stat(
            "OOM kills in range",
            "Processes the kernel's OOM killer ended in the time range.",
            "short",
            instant(f"sum({increase(h('aiops_host_oom_kills_total'), '$__range')})"),
            red_above=1,
        ),
        stat(
            "Processes skipped",
            "Processes the last collection could not read (exited, or /proc "
            "entries unreadable).",
            "short",
            instant(f"sum({h('aiops_process_skipped')})"),
        ),
        ts(
            "Host CPU and memory",
            "Share of CPU time spent busy, and of memory not available.",
            "percentunit",
            q(h("aiops_host_cpu_usage_ratio"), "{{instance}} CPU"),
            q(h("instance:aiops_host_memory_used:ratio"), "{{instance}} memory"),
            width=8,
            soft_max=1,
        ),
    )

    board.row("Process groups")
    board.add(
        ts(
            f"CPU share, top {TOP} groups",
            "CPU time of each group over the last collection interval, as a "
            'share of the whole host; the groups past the top N are "(other)".',
            "percentunit",
            q(top(h("aiops_process_group_cpu_usage_ratio")), GROUP_LEGEND),
            stacked=True,
        ),
        ts(
            f"Resident memory, top {TOP} groups",
            "Resident memory of each group.",
            "bytes",
            q(top(h("aiops_process_group_resident_memory_bytes")), GROUP_LEGEND),
            stacked=True,
        ),
        ts(
            f"CPU cores, top {TOP} groups",
            "CPU seconds per second (cores busy) of each group, from its counter.",
            CORES,
            q(top(rate(h("aiops_process_group_cpu_seconds_total"))), GROUP_LEGEND),
            width=8,
        ),
        ts(
            f"Disk reads and writes, top {TOP} groups",
            "Bytes per second read from and written to storage (needs the "
            "exporter to run as root).",
            "Bps",
            q(
                top(rate(h("aiops_process_group_read_bytes_total"))),
                f"{GROUP_LEGEND} read",
            ),
            q(
                top(rate(h("aiops_process_group_written_bytes_total"))),
                f"{GROUP_LEGEND} written",
            ),
            width=8,
        ),
        ts(
            f"Threads and open files, top {TOP} groups",
            "Threads and open file descriptors of each group.",
            "short",
            q(top(h("aiops_process_group_threads")), f"{GROUP_LEGEND} threads"),
            q(top(h("aiops_process_group_open_files")), f"{GROUP_LEGEND} files"),
            width=8,
        ),
        table(
            "Process groups now",
            "Every exported group: CPU share, resident memory, processes, threads.",
            instant(
                h("aiops_process_group_cpu_usage_ratio"), table=True, column="CPU share"
            ),
            instant(
                h("aiops_process_group_resident_memory_bytes"),
                table=True,
                column="resident memory",
            ),
            instant(h("aiops_process_group_processes"), table=True, column="processes"),
            instant(h("aiops_process_group_threads"), table=True, column="threads"),
            hide=("Time", "__name__", "job"),
            column_units={"CPU share": "percentunit", "resident memory": "bytes"},
        ),
    )

    board.row("GPU processes")
    board.add(
        table(
            "Processes on GPUs",
            "Compute processes per GPU and group, with their GPU memory and "
            "SM share; container_id and pod_uid name the container or pod.",
            instant(h("aiops_gpu_processes"), table=True, column="processes"),
            instant(
                h("aiops_gpu_process_memory_used_bytes"),
                table=True,
                column="GPU memory",
            ),
            instant(
                h("aiops_gpu_process_sm_utilization_ratio"),
                table=True,
                column="SM share",
            ),
            hide=("Time", "__name__", "job", "uuid"),
            column_units={"GPU memory": "bytes", "SM share": "percentunit"},
        ),
    )
    return board.build()
