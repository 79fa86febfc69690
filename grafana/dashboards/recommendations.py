"""Recommendations: the optimizer's sizes (lower, target, upper) against the
allocations in force, the fleet-wide savings, GPU power limits, and the
optimizer's own state (detector/optimizer/collector.py)."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.dashboards.panels import (
    CORES,
    Board,
    band,
    instant,
    label_variable,
    q,
    stat,
)
from grafana.dashboards.panels import table as table_panel
from grafana.dashboards.panels import timeseries as ts
from grafana.dashboards.promql import rate, sel

UID = "aiops-recommendations"
GROUP_LEGEND = "{{instance}} {{command}} ({{user}}) {{container_id}}"
GPU_GROUP_LEGEND = "{{instance}} GPU {{gpu}} {{command}} ({{user}}) {{container_id}}"
GPU_LEGEND = "{{instance}} GPU {{gpu}}"


@dataclass(frozen=True)
class Resource:
    """One sized resource: its metrics' common suffix and how to show it."""

    suffix: str
    title: str
    unit: str
    legend: str
    per_gpu: bool = False


RESOURCES = (
    Resource("cpu_cores", "CPU", CORES, GROUP_LEGEND),
    Resource("memory_bytes", "Memory", "bytes", GROUP_LEGEND),
    Resource("gpu_memory_bytes", "GPU memory", "bytes", GPU_GROUP_LEGEND, True),
    Resource("gpu_time_ratio", "GPU time", "percentunit", GPU_GROUP_LEGEND, True),
)
# Fleet-wide savings: (metric, title, unit). GPU time is summed over GPUs, so
# its unit is GPUs, not a share of one.
SAVINGS = (
    ("aiops_recommended_savings_cpu_cores", "CPU to free", CORES),
    ("aiops_recommended_savings_memory_bytes", "Memory to free", "bytes"),
    ("aiops_recommended_savings_gpu_memory_bytes", "GPU memory to free", "bytes"),
    ("aiops_recommended_savings_gpus", "GPU time to free", "suffix: GPUs"),
    ("aiops_recommended_savings_gpu_power_watts", "GPU power budget to free", "watt"),
)


def scope(resource: Resource) -> tuple[str, ...]:
    return ("instance", "gpu") if resource.per_gpu else ("instance",)


def lined_up(selector: str) -> str:
    """`selector` without its metric name and `bound` label, so that a table
    merges an allocation and the bounds of its recommendation into one row."""
    return f"max without (bound) ({selector})"


def build() -> Dashboard:
    board = Board(
        UID,
        "prom-aiops / Recommendations",
        "What the optimizer recommends for each process group and GPU against "
        "what is allocated now, and what applying it would free.",
        [
            label_variable(
                "instance",
                "Host",
                '{__name__=~"aiops_recommended_.+", bound="target"}',
                "Hosts of the recommended series.",
            ),
            label_variable(
                "gpu",
                "GPU",
                '{__name__=~"aiops_recommended_gpu_.+", instance=~"$instance", '
                'bound="target"}',
                "GPU indices, for the GPU panels.",
            ),
        ],
    )

    board.row("Fleet savings")
    board.add(
        *(
            stat(
                title,
                "Freed fleet-wide if every recommendation with a known allocation "
                "were applied; negative when more is needed. Not filtered by "
                "host.",
                unit,
                instant(f"sum({metric})"),
                width=4 if n < len(SAVINGS) - 1 else 8,
            )
            for n, (metric, title, unit) in enumerate(SAVINGS)
        )
    )

    for resource in RESOURCES:
        board.row(resource.title)
        board.add(*resource_panels(resource))

    board.row("GPU power limits")
    board.add(*power_panels())

    board.row("Optimizer")
    board.add(*optimizer_panels())
    return board.build()


def resource_panels(resource: Resource) -> tuple:
    recommended = f"aiops_recommended_{resource.suffix}"
    allocated = f"aiops_allocated_{resource.suffix}"
    variables = scope(resource)
    legend = resource.legend
    return (
        band(
            f"{resource.title}: recommended against allocated",
            "The recommended target with its lower and upper bound (dashed), "
            "and the allocation in force. An allocation far above upper wastes "
            "capacity; below lower, the group is likely to be throttled or "
            "killed.",
            resource.unit,
            q(sel(allocated, *variables), f"{legend} allocated"),
            q(sel(recommended, *variables, bound="target"), f"{legend} target"),
            q(sel(recommended, *variables, bound="lower"), f"{legend} lower"),
            q(sel(recommended, *variables, bound="upper"), f"{legend} upper"),
            width=14,
        ),
        table_panel(
            f"{resource.title}: recommendations now",
            "Per series: the allocation in force, and the recommended lower, "
            "target and upper. A missing allocation means the optimizer does not "
            "know it; its saving is left out of the fleet's.",
            instant(
                lined_up(sel(allocated, *variables)), table=True, column="allocated"
            ),
            *(
                instant(
                    lined_up(sel(recommended, *variables, bound=bound)),
                    table=True,
                    column=bound,
                )
                for bound in ("lower", "target", "upper")
            ),
            unit=resource.unit,
            hide=("Time", "__name__", "job", "uuid", "pod_uid", "unit"),
            width=10,
        ),
    )


def power_panels() -> tuple:
    recommended = "aiops_recommended_gpu_power_limit_watts"
    gpus = ("instance", "gpu")
    # The limit in force comes from the exporter, whose job label differs from
    # the optimizer's series: keep only the labels both share.
    in_force = (
        "max by (instance, gpu, uuid) ("
        + sel("aiops_gpu_power_limit_watts", *gpus)
        + ") and on (instance, gpu, uuid) "
        + sel(recommended, *gpus, bound="target")
    )
    return (
        band(
            "Power limit: recommended against in force",
            "The recommended power limit with its lower and upper bound (dashed), "
            "the limit in force and the draw. A limit well above upper only "
            "reserves power the GPU does not use.",
            "watt",
            q(in_force, f"{GPU_LEGEND} in force"),
            q(sel(recommended, *gpus, bound="target"), f"{GPU_LEGEND} target"),
            q(sel(recommended, *gpus, bound="lower"), f"{GPU_LEGEND} lower"),
            q(sel(recommended, *gpus, bound="upper"), f"{GPU_LEGEND} upper"),
            width=14,
        ),
        ts(
            "Draw above the recommended limit",
            "Mean draw above the recommended limit over the optimizer's window: "
            "the most a GPU's draw could drop; near 0, the new limit costs no "
            "speed.",
            "watt",
            q(
                sel("aiops_recommended_gpu_power_draw_savings_watts", *gpus),
                GPU_LEGEND,
            ),
            width=10,
        ),
    )


def optimizer_panels() -> tuple:
    return (
        ts(
            "Series by state",
            "Series per resource with a recommendation, or too_short: less "
            "history than the warm-up, no recommendation yet.",
            "short",
            q(
                "sum by (resource, state) (aiops_optimizer_series)",
                "{{resource}} {{state}}",
            ),
            width=8,
        ),
        ts(
            "Recommended series without an allocation",
            "Series whose allocation in force the optimizer could not read (no "
            "allocation query, or it returned nothing for them); set the "
            "resource's allocation query to count their savings.",
            "short",
            q(
                "sum by (resource) (aiops_optimizer_series_without_allocation)",
                "{{resource}}",
            ),
            width=8,
        ),
        ts(
            "GPUs by power advice state",
            "recommended, too_short (less draw history than the warm-up), "
            "no_limit (no power limit series) or no_limit_range (no NVML "
            "min/max limit series).",
            "short",
            q("sum by (state) (aiops_optimizer_gpus)", "{{state}}"),
            width=8,
        ),
        stat(
            "Since the last optimizer cycle",
            "Time since an optimizer cycle last succeeded in every stage; it "
            "runs once per optimizer interval (5 minutes by default).",
            "s",
            instant("time() - max(aiops_optimizer_last_success_timestamp_seconds > 0)"),
            width=8,
            height=8,
        ),
        ts(
            "Optimizer errors and unit mismatches",
            "Failed stages (query, recommend, power), and series batches skipped "
            "because their readings exceed the unit's full size (a percent "
            "where a 0-1 ratio is configured): fix the query.",
            "cps",
            q(f"sum by (stage) ({rate('aiops_optimizer_errors_total')})", "{{stage}}"),
            q(
                f"sum by (resource) ({rate('aiops_optimizer_unit_mismatches_total')})",
                "{{resource}} unit mismatch",
            ),
            width=16,
        ),
    )
