from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from detector.metrics import DetectorCollector
from detector.model import Score
from detector.snapshot import FamilyState, SeriesState, Snapshot

SCORE = Score(
    value=91.0,
    expected=50.0,
    lower=44.0,
    upper=56.0,
    z=41.0,
    score=41.0 / 47.0,
    decision=1,
    warm=True,
)


def scrape(snapshot: Snapshot) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    registry.register(DetectorCollector(lambda: snapshot))
    text = generate_latest(registry).decode()

    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_series_carry_query_and_source_labels() -> None:
    state = SeriesState("gpu_temp", (("gpu", "0"), ("query", "src")), 1.0, SCORE)

    samples = scrape(Snapshot(series=(state,)))

    labels = {"gpu": "0", "exported_query": "src", "query": "gpu_temp"}
    assert samples["aiops_anomaly_score"] == [(labels, SCORE.score)]
    assert samples["aiops_anomaly_decision"] == [(labels, 1.0)]
    assert samples["aiops_anomaly_observed_value"] == [(labels, 91.0)]
    assert samples["aiops_anomaly_expected_value"] == [(labels, 50.0)]
    assert samples["aiops_anomaly_expected_lower"] == [(labels, 44.0)]
    assert samples["aiops_anomaly_expected_upper"] == [(labels, 56.0)]
    assert samples["aiops_anomaly_model_warm"] == [(labels, 1.0)]


def test_series_with_different_label_sets_share_a_family() -> None:
    series = (
        SeriesState("a", (("gpu", "0"),), 1.0, SCORE),
        SeriesState("b", (("node", "n1"), ("device", "nvme0")), 1.0, SCORE),
    )

    samples = scrape(Snapshot(series=series))

    assert [labels for labels, _ in samples["aiops_anomaly_score"]] == [
        {"gpu": "0", "query": "a"},
        {"node": "n1", "device": "nvme0", "query": "b"},
    ]


def test_health_is_exported_with_errors_preset_to_zero() -> None:
    snapshot = Snapshot(
        query_errors={"a": 0, "b": 3},
        prometheus_up=True,
        cycle_duration_seconds=0.25,
        last_success_timestamp_seconds=1_700_000_000.0,
        series_tracked=7,
        series_dropped_total=2,
        points_scored_total=1234,
    )

    samples = scrape(snapshot)

    assert samples["aiops_detector_query_errors_total"] == [
        ({"query": "a"}, 0.0),
        ({"query": "b"}, 3.0),
    ]
    assert samples["aiops_detector_prometheus_up"] == [({}, 1.0)]
    assert samples["aiops_detector_cycle_duration_seconds"] == [({}, 0.25)]
    assert samples["aiops_detector_last_success_timestamp_seconds"] == [
        ({}, 1_700_000_000.0)
    ]
    assert samples["aiops_detector_series_tracked"] == [({}, 7.0)]
    assert samples["aiops_detector_series_dropped_total"] == [({}, 2.0)]
    assert samples["aiops_detector_points_scored_total"] == [({}, 1234.0)]


def test_an_empty_snapshot_still_scrapes() -> None:
    samples = scrape(Snapshot())

    assert samples["aiops_detector_prometheus_up"] == [({}, 0.0)]
    assert "aiops_anomaly_score" not in samples


def test_model_state_and_shared_models_are_exported() -> None:
    state = SeriesState("gpu_temp", (("gpu", "0"),), 1.0, SCORE, points_seen=1440)
    snapshot = Snapshot(
        series=(state,),
        families=(
            FamilyState("gpu_temp", "forecaster", 1_700_000_000.0, 0),
            FamilyState("gpu", "pca", None, 2),
        ),
        series_other_shards=12,
        shard_index=1,
        shard_count=3,
    )

    samples = scrape(snapshot)

    labels = {"gpu": "0", "query": "gpu_temp"}
    assert samples["aiops_anomaly_model_points"] == [(labels, 1440.0)]
    assert samples["aiops_detector_model_trained_timestamp_seconds"] == [
        ({"family": "gpu_temp", "model": "forecaster"}, 1_700_000_000.0)
    ]
    assert samples["aiops_detector_model_training_failures_total"] == [
        ({"family": "gpu_temp", "model": "forecaster"}, 0.0),
        ({"family": "gpu", "model": "pca"}, 2.0),
    ]
    assert samples["aiops_detector_series_other_shards"] == [({}, 12.0)]
    assert samples["aiops_detector_shard_info"] == [({"index": "1", "count": "3"}, 1.0)]
