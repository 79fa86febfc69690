from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from detector.optimizer.collector import RESOURCE_METRICS, OptimizerCollector
from detector.optimizer.optimizer import STAGES
from detector.optimizer.power import GPU_STATES, PowerAdvice
from detector.optimizer.snapshot import OptimizerSnapshot, Recommendation, ResourceState

LABELS = (("instance", "h1"), ("command", "python"), ("user", "ai"))
GPU = (("instance", "h1"), ("gpu", "0"), ("uuid", "GPU-1"))


def scrape(
    snapshot: OptimizerSnapshot,
) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    registry.register(OptimizerCollector(lambda: snapshot))
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_sizes_carry_bound_and_identity_labels() -> None:
    state = ResourceState(
        "memory_bytes",
        ("instance", "command", "user"),
        (Recommendation(LABELS, 1e9, 2e9, 3e9, 4e9),),
        too_short=2,
        without_allocation=0,
        savings=2e9,
    )

    samples = scrape(OptimizerSnapshot(resources=(state,)))

    identity = dict(LABELS)
    assert samples["aiops_recommended_memory_bytes"] == [
        ({**identity, "bound": "lower"}, 1e9),
        ({**identity, "bound": "target"}, 2e9),
        ({**identity, "bound": "upper"}, 3e9),
    ]
    assert samples["aiops_allocated_memory_bytes"] == [(identity, 4e9)]
    assert samples["aiops_recommended_savings_memory_bytes"] == [({}, 2e9)]
    assert ({"resource": "memory_bytes", "state": "too_short"}, 2.0) in samples[
        "aiops_optimizer_series"
    ]


def test_an_unknown_allocation_is_absent_not_zero() -> None:
    state = ResourceState(
        "cpu_cores",
        ("instance", "command", "user"),
        (Recommendation(LABELS, 0.5, 1.0, 2.0, None),),
        without_allocation=1,
    )

    samples = scrape(OptimizerSnapshot(resources=(state,)))

    assert "aiops_allocated_cpu_cores" not in samples
    assert samples["aiops_optimizer_series_without_allocation"] == [
        ({"resource": "cpu_cores"}, 1.0)
    ]


def test_power_limits_and_savings() -> None:
    advice = PowerAdvice(GPU, 150.0, 220.0, 260.0, 400.0, 180.0, 3.5)
    snapshot = OptimizerSnapshot(
        power_label_names=("instance", "gpu", "uuid"),
        power=(advice,),
        gpus={"recommended": 1, "no_limit_range": 2},
    )

    samples = scrape(snapshot)

    assert ({**dict(GPU), "bound": "target"}, 220.0) in samples[
        "aiops_recommended_gpu_power_limit_watts"
    ]
    assert samples["aiops_recommended_gpu_power_draw_savings_watts"] == [
        (dict(GPU), 3.5)
    ]
    assert samples["aiops_recommended_savings_gpu_power_watts"] == [({}, 180.0)]
    gpus = dict((s["state"], v) for s, v in samples["aiops_optimizer_gpus"])
    assert gpus == {
        s: {"recommended": 1, "no_limit_range": 2}.get(s, 0) for s in GPU_STATES
    }


def test_health_is_there_from_the_start() -> None:
    snapshot = OptimizerSnapshot(
        errors=dict.fromkeys(STAGES, 0),
        unit_mismatches={"gpu_time_ratio": 0},
        series_refused={"gpu_time_ratio": 0},
    )

    samples = scrape(snapshot)

    assert samples["aiops_optimizer_errors_total"] == [
        ({"stage": stage}, 0.0) for stage in STAGES
    ]
    assert samples["aiops_optimizer_unit_mismatches_total"] == [
        ({"resource": "gpu_time_ratio"}, 0.0)
    ]
    assert samples["aiops_optimizer_series_refused_total"] == [
        ({"resource": "gpu_time_ratio"}, 0.0)
    ]
    assert samples["aiops_optimizer_last_success_timestamp_seconds"] == [({}, 0.0)]
    assert samples["aiops_optimizer_cycle_duration_seconds"] == [({}, 0.0)]
    assert samples["aiops_optimizer_interval_seconds"] == [({}, 0.0)]


def test_every_family_is_described() -> None:
    collector = OptimizerCollector(lambda: OptimizerSnapshot())
    described = {m.name for m in collector.describe()}
    state = ResourceState("gpu_time_ratio", ("instance",), ())

    collected = {
        m.name
        for m in OptimizerCollector(
            lambda: OptimizerSnapshot(resources=(state,))
        ).collect()
    }

    assert collected <= described


def test_a_resource_metric_help_names_the_unit_of_its_name() -> None:
    units = {"_cores": "cores", "_bytes": "bytes", "_ratio": "0-1", "_gpus": "gpus"}

    for name, doc in (pair for names in RESOURCE_METRICS.values() for pair in names):
        unit = next(unit for suffix, unit in units.items() if name.endswith(suffix))
        assert unit in doc.lower(), name
