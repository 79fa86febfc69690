"""The detector's metrics: a prometheus_client Collector over the latest Snapshot.

A scrape only reads the current Snapshot; querying and scoring happen in the
loop's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from detector.checkpoint import STAGES, CheckpointStatus
from detector.model import Score
from detector.snapshot import SeriesState, Snapshot

# One gauge per quantity of a scored series; each carries `query` plus the
# source series' own labels (a source `query` label becomes `exported_query`).
SERIES_GAUGES: tuple[tuple[str, str, Callable[[Score], float]], ...] = (
    (
        "aiops_anomaly_score",
        "Calibrated anomaly score of the latest point in 0-1 (model.kind "
        "ensemble: 0.5 where the combined evidence reaches model.ensemble."
        "evidence_floor, the least a decision needs; robust: 0.5 where the "
        "robust z-score reaches model.threshold).",
        lambda s: s.score,
    ),
    (
        "aiops_anomaly_decision",
        "1 when the model decides the latest point is anomalous, once warm; else 0.",
        lambda s: s.decision,
    ),
    (
        "aiops_anomaly_observed_value",
        "Latest scored value of the source series.",
        lambda s: s.value,
    ),
    (
        "aiops_anomaly_expected_value",
        "Value the model expected for the latest point: the seasonal expectation "
        "when the series has earlier days, else the median of its recent window.",
        lambda s: s.expected,
    ),
    (
        "aiops_anomaly_expected_lower",
        "Lower edge of the band within which the latest point is not anomalous.",
        lambda s: s.lower,
    ),
    (
        "aiops_anomaly_expected_upper",
        "Upper edge of the band within which the latest point is not anomalous.",
        lambda s: s.upper,
    ),
    (
        "aiops_anomaly_model_warm",
        "1 once the model has seen enough points to decide, 0 while warming up.",
        lambda s: float(s.warm),
    ),
)

POINTS_SEEN = (
    "aiops_anomaly_model_points",
    "Points the model of this series has learnt from since it was created, "
    "across restarts when restored from state_dir; its warm-up progress.",
)

QUERY_ERRORS = "aiops_detector_query_errors_total"
TRAINED = (
    "aiops_detector_model_trained_timestamp_seconds",
    "Unix time of the data a shared model (forecaster, pca, autoencoder) was "
    "last trained up to, by family and model; absent until one is trained.",
)
TRAINING_FAILURES = (
    "aiops_detector_model_training_failures_total",
    "Failed trainings of a shared model by family and model.",
)
SHARD_INFO = (
    "aiops_detector_shard",
    "This replica's shard of the series: index and count as labels, value 1.",
)
HEALTH_GAUGES: tuple[tuple[str, str, Callable[[Snapshot], float]], ...] = (
    (
        "aiops_detector_prometheus_up",
        "1 when the last cycle could query Prometheus, else 0.",
        lambda s: float(s.prometheus_up),
    ),
    (
        "aiops_detector_cycle_duration_seconds",
        "Duration of the last detection cycle.",
        lambda s: s.cycle_duration_seconds,
    ),
    (
        "aiops_detector_last_success_timestamp_seconds",
        "Unix time of the last cycle in which every query succeeded; 0 if none.",
        lambda s: s.last_success_timestamp_seconds,
    ),
    (
        "aiops_detector_series_tracked",
        "Source series that currently have a model.",
        lambda s: s.series_tracked,
    ),
    (
        "aiops_detector_series_other_shards",
        "Series of the last cycle's answers left to other replicas by --shard.",
        lambda s: s.series_other_shards,
    ),
    (
        "aiops_detector_series_warm",
        "Series and entities with a current score whose model is warm enough to "
        "decide; after a restart from state_dir, the restored ones at once.",
        lambda s: sum(1 for state in s.series if state.score.warm),
    ),
)
# The per-series state saved to state_dir (detector.checkpoint).
CHECKPOINT_GAUGES: tuple[tuple[str, str, Callable[[CheckpointStatus], float]], ...] = (
    (
        "aiops_detector_checkpoint_last_success_timestamp_seconds",
        "Unix time the series' models were last written to state_dir, by this "
        "process or, once restored, by the one before it; 0 if never.",
        lambda c: c.last_success_timestamp_seconds,
    ),
    (
        "aiops_detector_checkpoint_duration_seconds",
        "Time the last write of the series' models to state_dir took.",
        lambda c: c.duration_seconds,
    ),
    (
        "aiops_detector_checkpoint_size_bytes",
        "Size of the last file of series' models written to state_dir.",
        lambda c: c.size_bytes,
    ),
    (
        "aiops_detector_checkpoint_series",
        "Series whose model the last write to state_dir held.",
        lambda c: c.series_saved,
    ),
    (
        "aiops_detector_series_restored",
        "Series whose model was read back from state_dir at start, so that they "
        "did not warm up again.",
        lambda c: c.series_restored,
    ),
)
CHECKPOINT_ERRORS = (
    "aiops_detector_checkpoint_errors_total",
    "Checkpoint files of state_dir that could not be written or were refused on "
    "reading, by stage (read, write).",
)
HEALTH_COUNTERS: tuple[tuple[str, str, Callable[[Snapshot], float]], ...] = (
    (
        "aiops_detector_series_dropped_total",
        "New series refused because max_series was reached, once per cycle each.",
        lambda s: s.series_dropped_total,
    ),
    (
        "aiops_detector_points_scored_total",
        "Points scored by the models.",
        lambda s: s.points_scored_total,
    ),
)


class DetectorCollector(Collector):
    """Exposes whichever Snapshot `current` returns at scrape time."""

    def __init__(
        self,
        current: Callable[[], Snapshot],
        checkpoint: Callable[[], CheckpointStatus] = CheckpointStatus,
    ) -> None:
        self._current = current
        self._checkpoint = checkpoint

    def describe(self) -> Iterator[Metric]:
        for name, doc, _ in SERIES_GAUGES + HEALTH_GAUGES:
            yield GaugeMetricFamily(name, doc)
        for name, doc, _ in CHECKPOINT_GAUGES:
            yield GaugeMetricFamily(name, doc)
        yield CounterMetricFamily(*CHECKPOINT_ERRORS)
        yield GaugeMetricFamily(*POINTS_SEEN)
        for name, doc, _ in HEALTH_COUNTERS:
            yield CounterMetricFamily(name, doc)
        yield CounterMetricFamily(QUERY_ERRORS, "Failed queries by query name.")
        yield GaugeMetricFamily(*TRAINED)
        yield CounterMetricFamily(*TRAINING_FAILURES)
        yield InfoMetricFamily(*SHARD_INFO)

    def collect(self) -> Iterator[Metric]:
        snapshot = self._current()

        labelled = [(_labels(state), state) for state in snapshot.series]
        for name, doc, read in SERIES_GAUGES:
            family = GaugeMetricFamily(name, doc)
            for labels, state in labelled:
                family.add_sample(name, labels, float(read(state.score)))
            yield family
        points = GaugeMetricFamily(*POINTS_SEEN)
        for labels, state in labelled:
            points.add_sample(POINTS_SEEN[0], labels, float(state.points_seen))
        yield points

        for name, doc, read in HEALTH_GAUGES:
            yield GaugeMetricFamily(name, doc, value=float(read(snapshot)))
        for name, doc, read in HEALTH_COUNTERS:
            yield CounterMetricFamily(name, doc, value=float(read(snapshot)))

        checkpoint = self._checkpoint()
        for name, doc, read_status in CHECKPOINT_GAUGES:
            yield GaugeMetricFamily(name, doc, value=float(read_status(checkpoint)))
        checkpoint_errors = CounterMetricFamily(*CHECKPOINT_ERRORS, labels=["stage"])
        for stage in STAGES:
            checkpoint_errors.add_metric([stage], checkpoint.errors.get(stage, 0))
        yield checkpoint_errors

        errors = CounterMetricFamily(
            QUERY_ERRORS, "Failed queries by query name.", labels=["query"]
        )
        for query, count in snapshot.query_errors.items():
            errors.add_metric([query], float(count))
        yield errors

        trained = GaugeMetricFamily(*TRAINED, labels=["family", "model"])
        failures = CounterMetricFamily(*TRAINING_FAILURES, labels=["family", "model"])
        for state in snapshot.families:
            if state.trained_timestamp is not None:
                trained.add_metric(
                    [state.family, state.model], float(state.trained_timestamp)
                )
            failures.add_metric([state.family, state.model], state.training_failures)
        yield trained
        yield failures

        info = InfoMetricFamily(*SHARD_INFO)
        info.add_metric(
            [],
            {"index": str(snapshot.shard_index), "count": str(snapshot.shard_count)},
        )
        yield info


def _labels(state: SeriesState) -> dict[str, str]:
    """The source labels plus `query`, renaming a clashing source label."""
    labels = dict(state.labels)
    # Prometheus renames a clashing target label the same way on scrape.
    if "query" in labels:
        renamed = "exported_query"
        while renamed in labels:
            renamed = "exported_" + renamed
        labels[renamed] = labels.pop("query")
    labels["query"] = state.query
    return labels
