"""The diagnosis metrics: a prometheus_client Collector over the latest
DiagnosisSnapshot. A scrape only reads it; querying happens in the loop.

Label sets are bounded: at most top_causes causes for each of max_incidents
incidents, one fault class per GPU, one finding per process group on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from detector.diagnosis import security
from detector.diagnosis.incident import Incident
from detector.diagnosis.rootcause import Cause
from detector.diagnosis.service import STAGES, DiagnosisSnapshot

# The incident (query, instance, and gpu for a per-GPU anomaly), then the
# cause: its kind and display name, and the labels an action needs to find it.
CAUSE_LABELS = (
    "query",
    "instance",
    "gpu",
    "cause_kind",
    "cause",
    "command",
    "user",
    "container_id",
    "pod_uid",
    "cause_gpu",
)
RANK = (
    "aiops_rootcause_rank",
    "Rank (1 = most likely) of a cause of an anomaly the detector holds; the "
    "top few per incident only.",
)
SHARE = (
    "aiops_rootcause_share_ratio",
    "Share (0-1) of the anomalous series' change over its window that a ranked "
    "cause made, against the cause's own baseline.",
)
FAULT_CLASS = (
    "aiops_gpu_fault_class",
    "1 for a GPU's diagnosed fault class (application_fault, reset_gpu, reboot, "
    "drain_and_inspect, thermal_throttle, power_throttle); escalated is true when "
    "the same Xid came back after its remedy. Healthy GPUs have no series.",
    ("instance", "gpu", "uuid", "fault_class", "escalated"),
)
FINDINGS = {
    security.UNOWNED: (
        "aiops_security_unowned_gpu_processes",
        "Processes on a GPU whose user and container are on no allow list.",
        ("instance", "gpu", "user", "command", "container_id"),
    ),
    security.MINING: (
        "aiops_security_mining_suspected",
        "1 for a process group on a GPU that looks like a cryptominer: a known "
        "miner's name (reason=name) or full SM use with tiny memory (pattern).",
        ("instance", "gpu", "user", "command", "reason"),
    ),
    security.NEW_USER: (
        "aiops_security_new_gpu_user_gpus",
        "GPUs held by a user who held none on that host over the lookback.",
        ("instance", "user"),
    ),
    security.AUTH_FAILURES: (
        "aiops_security_auth_failures",
        "Requests refused for bad or missing credentials over the auth window, "
        "per component.",
        ("job", "instance"),
    ),
}
LAST_SUCCESS = (
    "aiops_diagnosis_last_success_timestamp_seconds",
    "Unix time of the last diagnosis cycle in which every stage succeeded; 0 if none.",
)
DURATION = ("aiops_diagnosis_cycle_duration_seconds", "Duration of the last cycle.")
ERRORS = (
    "aiops_diagnosis_errors_total",
    "Diagnosis stages (rootcause, gpu, security) that failed.",
)


class DiagnosisCollector(Collector):
    """Exposes whichever DiagnosisSnapshot `current` returns at scrape time."""

    def __init__(self, current: Callable[[], DiagnosisSnapshot]) -> None:
        self._current = current

    def describe(self) -> Iterator[Metric]:
        for name, doc in (RANK, SHARE, LAST_SUCCESS, DURATION):
            yield GaugeMetricFamily(name, doc)
        yield GaugeMetricFamily(FAULT_CLASS[0], FAULT_CLASS[1])
        for name, doc, _ in FINDINGS.values():
            yield GaugeMetricFamily(name, doc)
        yield CounterMetricFamily(*ERRORS)

    def collect(self) -> Iterator[Metric]:
        snapshot = self._current()

        rank = GaugeMetricFamily(*RANK, labels=CAUSE_LABELS)
        share = GaugeMetricFamily(*SHARE, labels=CAUSE_LABELS)
        for incident in snapshot.incidents:
            for labels, cause in cause_labels(incident):
                rank.add_metric(labels, cause.rank)
                share.add_metric(labels, cause.share)
        yield rank
        yield share

        name, doc, names = FAULT_CLASS
        faults = GaugeMetricFamily(name, doc, labels=names)
        for state in snapshot.gpus:
            d = state.diagnosis
            faults.add_metric(
                [
                    state.labels.get("instance", ""),
                    state.labels.get("gpu", ""),
                    state.labels.get("uuid", ""),
                    d.fault_class,
                    "true" if d.escalated else "false",
                ],
                1,
            )
        yield faults

        families = {
            kind: GaugeMetricFamily(name, doc, labels=names)
            for kind, (name, doc, names) in FINDINGS.items()
        }
        for finding in snapshot.findings:
            keys: tuple[str, ...] = FINDINGS[finding.kind][2]
            families[finding.kind].add_metric(
                [finding.labels.get(n, "") for n in keys], finding.value
            )
        yield from families.values()

        yield GaugeMetricFamily(
            *LAST_SUCCESS, value=snapshot.last_success_timestamp_seconds
        )
        yield GaugeMetricFamily(*DURATION, value=snapshot.cycle_duration_seconds)
        errors = CounterMetricFamily(*ERRORS, labels=["stage"])
        for stage in STAGES:
            errors.add_metric([stage], snapshot.errors.get(stage, 0))
        yield errors


def cause_labels(incident: Incident) -> Iterator[tuple[list[str], Cause]]:
    """Each ranked cause of `incident` with its label values, in CAUSE_LABELS order."""
    anomaly = incident.anomaly
    for cause in incident.ranking.causes:
        labels = cause.labels
        yield (
            [
                anomaly.query,
                anomaly.labels.get("instance", ""),
                anomaly.labels.get("gpu", ""),
                cause.kind,
                cause.name,
                labels.get("command", ""),
                labels.get("user", ""),
                labels.get("container_id", ""),
                labels.get("pod_uid", ""),
                labels.get("gpu", ""),
            ],
            cause,
        )
