"""The optimizer's metrics: a prometheus_client Collector over its latest snapshot.

Every metric is declared here. Sizes carry `bound` (lower, target, upper: the
one quantity, three estimates of it, as the VPA gives three) and the series'
identity labels from the config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from detector.optimizer.power import GPU_STATES
from detector.optimizer.snapshot import OptimizerSnapshot, ResourceState

BOUNDS = ("lower", "target", "upper")

# Per sized resource: (recommended, allocated, fleet savings) names and help.
RESOURCE_METRICS: dict[
    str, tuple[tuple[str, str], tuple[str, str], tuple[str, str]]
] = {
    "cpu_cores": (
        (
            "aiops_recommended_cpu_cores",
            "Recommended CPU for a process group, in cores.",
        ),
        (
            "aiops_allocated_cpu_cores",
            "CPU limit in force for a process group, in cores.",
        ),
        (
            "aiops_recommended_savings_cpu_cores",
            "Cores freed fleet-wide if every CPU recommendation with a known limit "
            "were applied; negative when more is needed.",
        ),
    ),
    "memory_bytes": (
        (
            "aiops_recommended_memory_bytes",
            "Recommended memory for a process group, in bytes.",
        ),
        (
            "aiops_allocated_memory_bytes",
            "Memory limit in force for a process group, in bytes.",
        ),
        (
            "aiops_recommended_savings_memory_bytes",
            "Memory freed fleet-wide if every memory recommendation with a known "
            "limit were applied, in bytes; negative when more is needed.",
        ),
    ),
    "gpu_memory_bytes": (
        (
            "aiops_recommended_gpu_memory_bytes",
            "Recommended GPU memory for a process group on a GPU, in bytes.",
        ),
        (
            "aiops_allocated_gpu_memory_bytes",
            "GPU memory limit in force for a process group on a GPU, in bytes.",
        ),
        (
            "aiops_recommended_savings_gpu_memory_bytes",
            "GPU memory freed fleet-wide if every recommendation with a known limit "
            "were applied, in bytes; negative when more is needed.",
        ),
    ),
    "gpu_time_ratio": (
        (
            "aiops_recommended_gpu_time_ratio",
            "Recommended share of a GPU's time for a process group, 0-1.",
        ),
        (
            "aiops_allocated_gpu_time_ratio",
            "Share of a GPU's time in force for a process group, 0-1.",
        ),
        (
            "aiops_recommended_savings_gpus",
            "GPU time freed fleet-wide if every recommendation with a known share "
            "were applied, in whole GPUs (a sum of 0-1 shares of a GPU's time); "
            "negative when more is needed.",
        ),
    ),
}
POWER_LIMIT = (
    "aiops_recommended_gpu_power_limit_watts",
    "Recommended power limit of a GPU, in watts, within the range NVML allows.",
)
POWER_DRAW_SAVINGS = (
    "aiops_recommended_gpu_power_draw_savings_watts",
    "Mean draw above the recommended limit over the window, in watts: an upper "
    "bound on the drop in a GPU's draw.",
)
POWER_BUDGET_SAVINGS = (
    "aiops_recommended_savings_gpu_power_watts",
    "Power budget freed fleet-wide if every recommended GPU power limit were "
    "applied, in watts.",
)
SERIES = (
    "aiops_optimizer_series",
    "Series of a resource by state: recommended, or too_short (less history "
    "than the warm-up; no recommendation yet).",
)
WITHOUT_ALLOCATION = (
    "aiops_optimizer_series_without_allocation",
    "Recommended series whose limit in force is unknown (no allocation query, "
    "or it returned nothing for them); their savings are left out.",
)
GPUS = (
    "aiops_optimizer_gpus",
    "GPUs by power advice state: recommended, too_short, no_limit (no power "
    "limit series) or no_limit_range (no NVML min/max limit series).",
)
UNIT_MISMATCHES = (
    "aiops_optimizer_unit_mismatches_total",
    "Series batches skipped because readings exceeded the unit's full size "
    "(e.g. percent where a 0-1 ratio is configured).",
)
SERIES_REFUSED = (
    "aiops_optimizer_series_refused_total",
    "New series not sized because optimizer.max_series was reached, once per "
    "cycle each.",
)
ERRORS = ("aiops_optimizer_errors_total", "Failed optimizer stages, by stage.")
LAST_SUCCESS = (
    "aiops_optimizer_last_success_timestamp_seconds",
    "Unix time of the last optimizer cycle in which every stage succeeded; 0 if none.",
)
DURATION = (
    "aiops_optimizer_cycle_duration_seconds",
    "Duration of the last optimizer cycle.",
)
INTERVAL = (
    "aiops_optimizer_interval_seconds",
    "How often an optimizer cycle starts (optimizer.interval_seconds).",
)


class OptimizerCollector(Collector):
    """Exposes whichever snapshot `current` returns at scrape time."""

    def __init__(self, current: Callable[[], OptimizerSnapshot]) -> None:
        self._current = current

    def describe(self) -> Iterator[Metric]:
        for names in RESOURCE_METRICS.values():
            for name, doc in names:
                yield GaugeMetricFamily(name, doc)
        for name, doc in (
            POWER_LIMIT,
            POWER_DRAW_SAVINGS,
            POWER_BUDGET_SAVINGS,
            SERIES,
            WITHOUT_ALLOCATION,
            GPUS,
            LAST_SUCCESS,
            DURATION,
            INTERVAL,
        ):
            yield GaugeMetricFamily(name, doc)
        for name, doc in (UNIT_MISMATCHES, SERIES_REFUSED, ERRORS):
            yield CounterMetricFamily(name, doc)

    def collect(self) -> Iterator[Metric]:
        snapshot = self._current()
        for state in snapshot.resources:
            yield from _resource(state)
        yield from _power(snapshot)

        series = GaugeMetricFamily(*SERIES, labels=["resource", "state"])
        without = GaugeMetricFamily(*WITHOUT_ALLOCATION, labels=["resource"])
        for state in snapshot.resources:
            series.add_metric(
                [state.resource, "recommended"], len(state.recommendations)
            )
            series.add_metric([state.resource, "too_short"], state.too_short)
            without.add_metric([state.resource], state.without_allocation)
        yield series
        yield without

        mismatches = CounterMetricFamily(*UNIT_MISMATCHES, labels=["resource"])
        for resource, count in snapshot.unit_mismatches.items():
            mismatches.add_metric([resource], count)
        yield mismatches
        refused = CounterMetricFamily(*SERIES_REFUSED, labels=["resource"])
        for resource, count in snapshot.series_refused.items():
            refused.add_metric([resource], count)
        yield refused
        errors = CounterMetricFamily(*ERRORS, labels=["stage"])
        for stage, count in snapshot.errors.items():
            errors.add_metric([stage], count)
        yield errors
        yield GaugeMetricFamily(
            *LAST_SUCCESS, value=snapshot.last_success_timestamp_seconds
        )
        yield GaugeMetricFamily(*DURATION, value=snapshot.cycle_duration_seconds)
        yield GaugeMetricFamily(*INTERVAL, value=snapshot.interval_seconds)


def _resource(state: ResourceState) -> Iterator[Metric]:
    (rec_name, rec_doc), (alloc_name, alloc_doc), (save_name, save_doc) = (
        RESOURCE_METRICS[state.resource]
    )
    names = list(state.label_names)
    recommended = GaugeMetricFamily(rec_name, rec_doc, labels=[*names, "bound"])
    allocated = GaugeMetricFamily(alloc_name, alloc_doc, labels=names)
    for r in state.recommendations:
        values = [v for _, v in r.labels]
        for bound, value in zip(BOUNDS, (r.lower, r.target, r.upper), strict=True):
            recommended.add_metric([*values, bound], value)
        if r.allocated is not None:
            allocated.add_metric(values, r.allocated)
    yield recommended
    yield allocated
    yield GaugeMetricFamily(save_name, save_doc, value=state.savings)


def _power(snapshot: OptimizerSnapshot) -> Iterator[Metric]:
    names = list(snapshot.power_label_names)
    limit = GaugeMetricFamily(*POWER_LIMIT, labels=[*names, "bound"])
    draw = GaugeMetricFamily(*POWER_DRAW_SAVINGS, labels=names)
    for advice in snapshot.power:
        values = [v for _, v in advice.labels]
        for bound, value in zip(
            BOUNDS, (advice.lower, advice.target, advice.upper), strict=True
        ):
            limit.add_metric([*values, bound], value)
        draw.add_metric(values, advice.draw_savings_watts)
    yield limit
    yield draw
    yield GaugeMetricFamily(
        *POWER_BUDGET_SAVINGS,
        value=sum(a.budget_savings_watts for a in snapshot.power),
    )
    gpus = GaugeMetricFamily(*GPUS, labels=["state"])
    for state in GPU_STATES:
        gpus.add_metric([state], snapshot.gpus.get(state, 0))
    yield gpus
