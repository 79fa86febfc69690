"""Fleet overview: every host's GPUs by health, load, memory, power and Xid
class, mostly from the recording rules in deploy/rules/aiops-recording.yml."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.dashboards.panels import Board, instant, label_variable, q, stat, table
from grafana.dashboards.panels import timeseries as ts
from grafana.dashboards.promql import RANGE, increase, sel

UID = "aiops-fleet-overview"


def build() -> Dashboard:
    board = Board(
        UID,
        "prom-aiops / Fleet overview",
        "Hosts and GPUs of the fleet: health, load, memory, power and Xid errors.",
        [
            label_variable(
                "instance",
                "Host",
                "aiops_host_logical_cpus",
                "Exporters (one per host) to show.",
            )
        ],
    )
    hosts = sel("up", "instance", job="aiops-exporter")

    board.row("Fleet")
    board.add(
        stat(
            "Hosts reporting",
            "Exporters Prometheus scraped successfully at the last scrape.",
            "short",
            instant(f"sum({hosts})"),
        ),
        stat(
            "Hosts down",
            "Exporters whose last scrape failed (alert AiopsExporterDown).",
            "short",
            instant(f"sum(1 - {hosts})"),
            red_above=1,
        ),
        stat(
            "GPUs seen",
            "GPUs NVML reports, summed over the hosts where NVML works.",
            "short",
            instant(f"sum({sel('aiops_gpu_devices', 'instance')})"),
        ),
        stat(
            "GPUs expected",
            "GPUs the hosts should have (expected_gpus in the exporter's "
            "config); hosts without it are left out.",
            "short",
            instant(f"sum({sel('aiops_gpu_devices_expected', 'instance')})"),
        ),
        stat(
            "GPUs not healthy",
            "GPUs lost or waiting for a reset (aiops_gpu_health_state).",
            "short",
            instant(
                "sum("
                + sel("aiops_gpu_health_state", "instance", state="!healthy")
                + ")"
            ),
            red_above=1,
        ),
        stat(
            "Hosts without NVML",
            "Exporters that serve no GPU metrics: no driver, no GPU, or NVML "
            "failed to start. Normal on CPU-only hosts.",
            "short",
            instant(f"sum(1 - {sel('aiops_nvml_available', 'instance')})"),
        ),
    )

    board.row("Load")
    board.add(
        ts(
            "GPU utilization by host",
            "Mean share of time a kernel ran, over the host's GPUs.",
            "percentunit",
            q(sel("instance:aiops_gpu_utilization:avg", "instance"), "{{instance}}"),
            soft_max=1,
        ),
        ts(
            "GPU memory used by host",
            "GPU memory allocated over GPU memory installed, per host.",
            "percentunit",
            q(sel("instance:aiops_gpu_memory_used:ratio", "instance"), "{{instance}}"),
            soft_max=1,
        ),
        ts(
            "GPU power by host",
            "Board power draw summed over the host's GPUs, and the sum of their "
            "power limits.",
            "watt",
            q(sel("instance:aiops_gpu_power:sum", "instance"), "{{instance}} draw"),
            q(
                sel("instance:aiops_gpu_power_limit:sum", "instance"),
                "{{instance}} limit",
            ),
        ),
        ts(
            "Hottest GPU by host",
            "The highest GPU core temperature on each host.",
            "celsius",
            q(
                "max by (instance) ("
                + sel("aiops_gpu_temperature_celsius", "instance")
                + ")",
                "{{instance}}",
            ),
        ),
        ts(
            "Host CPU",
            "Share of each host's CPU time spent busy.",
            "percentunit",
            q(sel("aiops_host_cpu_usage_ratio", "instance"), "{{instance}}"),
            soft_max=1,
        ),
        ts(
            "Host memory used",
            "Share of each host's memory not available to new work.",
            "percentunit",
            q(sel("instance:aiops_host_memory_used:ratio", "instance"), "{{instance}}"),
            soft_max=1,
        ),
    )

    board.row("Faults")
    board.add(
        table(
            "GPUs by health state",
            "GPUs in each health state, over the selected hosts.",
            instant(
                "sum by (state) (" + sel("aiops_gpu_health_state", "instance") + ")",
                table=True,
            ),
            width=8,
        ),
        table(
            "Xid errors by recommended action",
            "Xid errors over the dashboard's time range, by the action NVIDIA's "
            "catalog recommends (application_fault, reset_gpu, reboot, "
            "drain_and_inspect).",
            instant(
                "sum by (action) ("
                + increase(sel("aiops_gpu_xid_errors_total", "instance"), RANGE)
                + ")",
                table=True,
            ),
            width=8,
        ),
        table(
            "Recovery actions the driver asks for",
            "GPUs per recovery action the driver recommends (none when healthy).",
            instant(
                "sum by (action) ("
                + sel("aiops_gpu_recovery_action", "instance")
                + ")",
                table=True,
            ),
            width=8,
        ),
        table(
            "GPUs",
            "Identity of every GPU: model, bus id, driver and CUDA versions.",
            instant(sel("aiops_gpu_info", "instance"), table=True),
            hide=("Time", "__name__", "Value", "job"),
        ),
    )
    return board.build()
