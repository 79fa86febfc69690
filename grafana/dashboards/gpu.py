"""GPU detail: one host's GPUs field by field, throttle reasons, ECC and row
remapping, interconnects, Xid errors and the processes on each GPU."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.dashboards.panels import Board, instant, label_variable, q, states, table
from grafana.dashboards.panels import timeseries as ts
from grafana.dashboards.promql import increase, rate, sel

UID = "aiops-gpu-detail"
GPU = ("instance", "gpu")
LEGEND = "{{instance}} GPU {{gpu}}"
PROCESS_LEGEND = "GPU {{gpu}} {{command}} ({{user}}) {{container_id}} {{pid}}"


def g(metric: str, **matchers: str) -> str:
    """`metric` on the selected hosts and GPUs."""
    return sel(metric, *GPU, **matchers)


def build() -> Dashboard:
    board = Board(
        UID,
        "prom-aiops / GPU detail",
        "Every field the exporter reads through NVML for the selected GPUs.",
        [
            label_variable(
                "instance", "Host", "aiops_gpu_info", "Hosts with GPUs to show."
            ),
            label_variable(
                "gpu",
                "GPU",
                'aiops_gpu_info{instance=~"$instance"}',
                "GPU indices (as NVML numbers them) to show.",
            ),
        ],
    )

    board.row("Load")
    board.add(
        ts(
            "Utilization",
            "Share of time a kernel ran (SM) and memory was read or written.",
            "percentunit",
            q(g("aiops_gpu_utilization_ratio"), f"{LEGEND} SM"),
            q(g("aiops_gpu_memory_utilization_ratio"), f"{LEGEND} memory"),
            soft_max=1,
        ),
        ts(
            "Memory",
            "GPU memory allocated, against the memory installed.",
            "bytes",
            q(g("aiops_gpu_memory_used_bytes"), f"{LEGEND} used"),
            q(g("aiops_gpu_memory_total_bytes"), f"{LEGEND} total"),
        ),
        ts(
            "Power",
            "Board power draw and the limit in force; the energy counter's rate "
            "is the mean draw between two scrapes.",
            "watt",
            q(g("aiops_gpu_power_watts"), f"{LEGEND} draw"),
            q(g("aiops_gpu_power_limit_watts"), f"{LEGEND} limit"),
            q(rate(g("aiops_gpu_energy_joules_total")), f"{LEGEND} from energy"),
        ),
        ts(
            "Temperature",
            "GPU core and memory (HBM) temperatures.",
            "celsius",
            q(g("aiops_gpu_temperature_celsius"), f"{LEGEND} core"),
            q(g("aiops_gpu_memory_temperature_celsius"), f"{LEGEND} memory"),
        ),
        ts(
            "Clocks",
            "Current SM and memory clocks.",
            "hertz",
            q(g("aiops_gpu_sm_clock_hertz"), f"{LEGEND} SM"),
            q(g("aiops_gpu_memory_clock_hertz"), f"{LEGEND} memory"),
        ),
        ts(
            "Performance state and fan",
            "P-state (0 is the most performance) and fan speed; the fan is "
            "absent on passively cooled GPUs.",
            "short",
            q(g("aiops_gpu_performance_state"), f"{LEGEND} P-state"),
            q(g("aiops_gpu_fan_speed_ratio"), f"{LEGEND} fan"),
        ),
    )

    board.row("Throttling and health")
    board.add(
        states(
            "Clock event reasons",
            "Reasons that hold the clocks down, as NVML reports them "
            "(gpu_idle is normal; thermal and power ones are not).",
            q(g("aiops_gpu_clock_event_reason_active"), f"{LEGEND} {{{{reason}}}}"),
            width=24,
            height=10,
        ),
        states(
            "Health state",
            "healthy answers NVML; lost has fallen off the bus; reset_required "
            "waits for a GPU reset.",
            q(g("aiops_gpu_health_state") + " == 1", f"{LEGEND} {{{{state}}}}"),
            mapping={"1": "current state"},
        ),
        table(
            "Recovery action and modes",
            "The recovery the driver recommends (action), and whether "
            "persistence and MIG mode are on.",
            # The recovery series is always 1; its action label is the answer.
            instant(g("aiops_gpu_recovery_action"), table=True),
            instant(
                g("aiops_gpu_persistence_mode_enabled"),
                table=True,
                column="persistence mode",
            ),
            instant(g("aiops_gpu_mig_mode_enabled"), table=True, column="MIG mode"),
            width=12,
            hide=("Time", "__name__", "job", "uuid", "Value #A"),
        ),
        ts(
            "NVML errors",
            "NVML calls that failed for a GPU other than as unsupported; their "
            "fields are missing from the other panels.",
            "cps",
            q(rate(g("aiops_gpu_nvml_errors_total")), LEGEND),
        ),
    )

    board.row("Memory errors")
    board.add(
        ts(
            "ECC errors",
            "Corrected and uncorrected ECC errors per scrape interval.",
            "short",
            q(
                increase(g("aiops_gpu_ecc_corrected_errors_total")),
                f"{LEGEND} corrected",
            ),
            q(
                increase(g("aiops_gpu_ecc_uncorrected_errors_total")),
                f"{LEGEND} uncorrected",
            ),
            width=8,
        ),
        ts(
            "Row remapping",
            "Rows remapped by cause, and whether a remap waits for a reset or "
            "failed (the GPU then needs service).",
            "short",
            q(g("aiops_gpu_remapped_rows"), f"{LEGEND} {{{{cause}}}}"),
            q(g("aiops_gpu_remapped_rows_pending"), f"{LEGEND} pending"),
            q(g("aiops_gpu_remapped_rows_failed"), f"{LEGEND} failed"),
            width=8,
        ),
        ts(
            "Retired pages (GPUs before Ampere)",
            "Pages retired by cause, and whether retirements wait for a reboot. "
            "Ampere and later GPUs remap rows instead.",
            "short",
            q(g("aiops_gpu_retired_pages"), f"{LEGEND} {{{{cause}}}}"),
            q(g("aiops_gpu_retired_pages_pending"), f"{LEGEND} pending"),
            width=8,
        ),
        table(
            "Xid errors",
            "Xid errors seen since the exporter started, with the catalog's "
            "severity and recommended action, and when each was last seen.",
            instant(g("aiops_gpu_xid_errors_total"), table=True, column="errors"),
            instant(
                f"time() - {g('aiops_gpu_xid_last_seen_timestamp_seconds')}",
                table=True,
                column="last seen ago",
            ),
            hide=("Time", "__name__", "job", "uuid"),
            column_units={"last seen ago": "s"},
        ),
    )

    board.row("Interconnect")
    board.add(
        ts(
            "PCIe throughput",
            "Bytes per second over PCIe, as the driver samples it.",
            "Bps",
            q(g("aiops_gpu_pcie_transmit_bytes_per_second"), f"{LEGEND} sent"),
            q(g("aiops_gpu_pcie_receive_bytes_per_second"), f"{LEGEND} received"),
            width=8,
        ),
        ts(
            "PCIe link and replays",
            "Link generation and width (a drop means a degraded link), and "
            "replays per second.",
            "short",
            q(g("aiops_gpu_pcie_link_generation"), f"{LEGEND} generation"),
            q(g("aiops_gpu_pcie_link_width"), f"{LEGEND} lanes"),
            q(rate(g("aiops_gpu_pcie_replays_total")), f"{LEGEND} replays/s"),
            width=8,
        ),
        ts(
            "NVLink",
            "Data bytes per second over all the GPU's NVLinks, and link errors "
            "per second by type.",
            "Bps",
            q(rate(g("aiops_gpu_nvlink_transmit_bytes_total")), f"{LEGEND} sent"),
            q(rate(g("aiops_gpu_nvlink_receive_bytes_total")), f"{LEGEND} received"),
            q(
                rate(g("aiops_gpu_nvlink_errors_total")),
                f"{LEGEND} {{{{type}}}} errors/s",
            ),
            width=8,
        ),
    )

    board.row("Processes")
    board.add(
        ts(
            "GPU memory by process group",
            "GPU memory of the compute processes on each GPU, per container, "
            "pod or command (per PID when the exporter is asked to).",
            "bytes",
            q(g("aiops_gpu_process_memory_used_bytes"), PROCESS_LEGEND),
            stacked=True,
        ),
        ts(
            "SM share by process group",
            "Share of the GPU's SM time each group used (NVML per-process "
            "utilization).",
            "percentunit",
            q(g("aiops_gpu_process_sm_utilization_ratio"), PROCESS_LEGEND),
            stacked=True,
        ),
        table(
            "MIG instances",
            "MIG devices of GPUs in MIG mode, with their memory.",
            instant(
                g("aiops_gpu_mig_instance_memory_used_bytes"), table=True, column="used"
            ),
            instant(
                g("aiops_gpu_mig_instance_memory_total_bytes"),
                table=True,
                column="total",
            ),
            unit="bytes",
            hide=("Time", "__name__", "job", "uuid"),
        ),
    )
    return board.build()
