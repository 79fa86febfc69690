"""The diagnosis cycle: for each anomaly the detector holds, fetch candidate
series from Prometheus and rank them; diagnose GPUs; gather security findings.
Publishes one immutable DiagnosisSnapshot; needs a range-query function.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from detector.diagnosis import gpufault, pattern, promql, security
from detector.diagnosis.config import DiagnosisConfig
from detector.diagnosis.rootcause import Candidate, Ranking, Window, rank_causes
from detector.prometheus import QueryError

log = logging.getLogger(__name__)

STAGES = ("rootcause", "gpu", "security")


class _Series(Protocol):
    """What the query function returns per series: labels and (t, v) points."""

    labels: Mapping[str, str]
    points: Sequence[tuple[float, float]]


# query_range(promql, start, end, step): PrometheusClient.query_range's shape.
QueryRange = Callable[[str, float, float, float], Sequence[_Series]]


@dataclass(frozen=True)
class Source:
    """Where the causes of one detector query's anomalies are looked for."""

    query: str
    metric: str
    kind: str
    quantity: str
    # Labels of the anomalous series that the candidates must share.
    match: tuple[str, ...] = ("instance",)


DEFAULT_SOURCES = (
    Source(
        "host_cpu",
        "aiops_process_group_cpu_usage_ratio",
        "process_group",
        pattern.USAGE,
    ),
    Source(
        "host_memory",
        "aiops_process_group_resident_memory_bytes",
        "process_group",
        pattern.MEMORY,
    ),
    Source(
        "gpu_utilization",
        "aiops_gpu_process_sm_utilization_ratio",
        "gpu_process",
        pattern.UTILIZATION,
        ("instance", "gpu"),
    ),
    Source(
        "gpu_memory",
        "aiops_gpu_process_memory_used_bytes",
        "gpu_process",
        pattern.MEMORY,
        ("instance", "gpu"),
    ),
)


@dataclass(frozen=True)
class Anomaly:
    """One anomalous series the detector holds: query, labels, point time."""

    query: str
    labels: Mapping[str, str]
    timestamp: float


@dataclass(frozen=True)
class Incident:
    """An anomaly with its ranked causes and the shape of the top cause."""

    anomaly: Anomaly
    window: Window
    ranking: Ranking
    shape: str = pattern.UNKNOWN


@dataclass(frozen=True)
class GpuState:
    labels: Mapping[str, str]  # instance, gpu, uuid
    diagnosis: gpufault.GpuDiagnosis


@dataclass(frozen=True)
class DiagnosisSnapshot:
    """Everything the diagnosis collector shows, as of one cycle."""

    incidents: tuple[Incident, ...] = ()
    gpus: tuple[GpuState, ...] = ()
    findings: tuple[security.Finding, ...] = ()
    errors: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    cycle_duration_seconds: float = 0.0
    last_success_timestamp_seconds: float = 0.0


def anomalies_from(snapshot: object) -> list[Anomaly]:
    """The anomalous series of a detector Snapshot (decision 1, model warm)."""
    found = []
    for state in getattr(snapshot, "series", ()):
        if state.score.decision == 1:
            found.append(Anomaly(state.query, dict(state.labels), state.timestamp))
    return found


class Diagnoser:
    """Runs one diagnosis per call to run_cycle(); the loop owns the timing."""

    def __init__(
        self,
        config: DiagnosisConfig,
        query_range: QueryRange,
        sources: Sequence[Source] = DEFAULT_SOURCES,
        clock: Callable[[], float] = time.time,
        fleet_wide: bool = True,
    ) -> None:
        """`fleet_wide`: whether this replica diagnoses the fleet's GPUs and
        security too, which, unlike the anomalies, no shard splits."""
        self._config = config
        self._fleet_wide = fleet_wide
        self._query = query_range
        self._sources = {s.query: s for s in sources}
        self._clock = clock
        self._errors = dict.fromkeys(STAGES, 0)
        self._last_success = 0.0
        self.snapshot = DiagnosisSnapshot(errors=dict(self._errors))

    def run_cycle(self, anomalies: Iterable[Anomaly]) -> DiagnosisSnapshot:
        """Diagnose the given anomalies and the fleet's GPUs; publish and return."""
        started = self._clock()
        failed = False
        incidents: list[Incident] = []
        gpus: list[GpuState] = []
        findings: list[security.Finding] = []

        stages = [
            ("rootcause", lambda: incidents.extend(self._rank_all(anomalies, started))),
            ("gpu", lambda: gpus.extend(self._diagnose_gpus(started))),
            ("security", lambda: findings.extend(self._find(started))),
        ]
        # Every shard would export the same GPU faults and findings: two
        # sources taking turns at one series (honor_labels), whose staleness
        # markers reset alerts when either restarts. Shard 0 alone reads them.
        for stage, work in stages if self._fleet_wide else stages[:1]:
            try:
                work()
            except QueryError as exc:
                # Expected while Prometheus is away or refuses a query: the
                # reason says all a traceback would, once per stage and cycle.
                log.warning("diagnosis stage failed stage=%s error=%s", stage, exc)
                self._errors[stage] += 1
                failed = True
            except Exception:  # loop boundary: one stage's fault stays there
                log.exception("diagnosis stage failed stage=%s", stage)
                self._errors[stage] += 1
                failed = True

        if not failed:
            self._last_success = self._clock()
        self.snapshot = DiagnosisSnapshot(
            incidents=tuple(incidents),
            gpus=tuple(gpus),
            findings=tuple(findings),
            errors=dict(self._errors),
            cycle_duration_seconds=max(0.0, self._clock() - started),
            last_success_timestamp_seconds=self._last_success,
        )
        return self.snapshot

    def diagnose(self, anomaly: Anomaly) -> Incident | None:
        """Rank the causes of one anomaly; None if its query has no source."""
        source = self._sources.get(anomaly.query)
        if source is None:
            return None
        config = self._config
        window = Window.ending_at(
            anomaly.timestamp, config.window_seconds, config.baseline_seconds
        )
        matchers = {k: anomaly.labels[k] for k in source.match if k in anomaly.labels}
        if len(matchers) < len(source.match):
            ranking = Ranking((), 0, None, (f"anomaly lacks labels {source.match}",))
            return Incident(anomaly, window, ranking)

        series = self._range(promql.candidates(source.metric, matchers), window)
        candidates = [_candidate(source, s) for s in series]
        ranking = rank_causes(
            candidates,
            window,
            top=config.top_causes,
            min_share=config.min_share,
            min_surprise=config.min_surprise,
        )
        shape = pattern.UNKNOWN
        if ranking.causes:
            top = next(c for c in candidates if c.name == ranking.causes[0].name)
            before = [v for t, v in top.points if t < window.start]
            during = [v for t, v in top.points if t >= window.start]
            shape = pattern.classify_shape(before, during, source.quantity)
        return Incident(anomaly, window, ranking, shape)

    def _rank_all(self, anomalies: Iterable[Anomaly], now: float) -> list[Incident]:
        chosen = sorted(
            (a for a in anomalies if a.query in self._sources),
            key=lambda a: (-a.timestamp, a.query, sorted(a.labels.items())),
        )
        if len(chosen) > self._config.max_incidents:
            log.warning(
                "too many anomalies to diagnose count=%d max_incidents=%d",
                len(chosen),
                self._config.max_incidents,
            )
        incidents = []
        for anomaly in chosen[: self._config.max_incidents]:
            incident = self.diagnose(anomaly)
            if incident is not None:
                incidents.append(incident)
        return incidents

    def _range(self, query: str, window: Window) -> Sequence[_Series]:
        step = self._config.step_seconds
        start = math.floor(window.baseline_start / step) * step
        return self._query(query, start, window.end, step)

    def _instant(
        self, query: str, now: float
    ) -> dict[tuple[tuple[str, str], ...], float]:
        values = {}
        for series in self._query(query, now, now, self._config.step_seconds):
            if series.points:
                values[tuple(sorted(series.labels.items()))] = series.points[-1][1]
        return values

    def _diagnose_gpus(self, now: float) -> list[GpuState]:
        config = self._config
        evidence: dict[tuple[str, str, str], dict] = {}

        def gpu_of(key: tuple[tuple[str, str], ...]) -> dict:
            labels = dict(key)
            ident = (
                labels.get("instance", ""),
                labels.get("gpu", ""),
                labels.get("uuid", ""),
            )
            return evidence.setdefault(ident, {"xids": [], "reasons": {}})

        last_seen = self._instant("aiops_gpu_xid_last_seen_timestamp_seconds", now)
        rebooted = self._instant(promql.xid_resets(config.xid_lookback_seconds), now)
        for key, count in self._instant(
            promql.xid_increase(config.window_seconds), now
        ).items():
            labels = dict(key)
            remedies = []
            if rebooted.get(key, 0) > 0:
                # Every count now standing came after the counter started again.
                remedies.append(gpufault.Remedy(gpufault.REBOOT, -math.inf))
            gpu_of(key)["xids"].append(
                (
                    gpufault.XidEvent(
                        int(labels.get("xid", "0") or 0),
                        labels.get("action", ""),
                        count,
                        last_seen.get(key, now),
                    ),
                    remedies,
                )
            )
        for key in self._instant("aiops_gpu_health_state == 1", now):
            gpu_of(key)["health"] = dict(key).get("state", "healthy")
        for key in self._instant("aiops_gpu_recovery_action == 1", now):
            gpu_of(key)["recovery"] = dict(key).get("action", "none")
        held = promql.over_window(
            "min_over_time",
            "aiops_gpu_clock_event_reason_active",
            config.window_seconds,
        )
        for key, value in self._instant(f"{held} == 1", now).items():
            gpu_of(key)["reasons"][dict(key).get("reason", "")] = value
        ecc = promql.over_window(
            "increase", "aiops_gpu_ecc_uncorrected_errors_total", config.window_seconds
        )
        for key, value in self._instant(f"{ecc} > 0", now).items():
            gpu_of(key)["ecc"] = value
        for key, _ in self._instant(
            "aiops_gpu_remapped_rows_pending == 1", now
        ).items():
            gpu_of(key)["pending"] = True
        for key in self._instant("aiops_gpu_remapped_rows_failed == 1", now):
            gpu_of(key)["failed"] = True

        states = []
        for (instance, gpu, uuid), found in sorted(evidence.items()):
            remedies = [r for _, rs in found["xids"] for r in rs]
            diagnosis = gpufault.diagnose_gpu(
                gpufault.GpuEvidence(
                    xids=[x for x, _ in found["xids"]],
                    health=found.get("health", "healthy"),
                    recovery_action=found.get("recovery", "none"),
                    clock_reasons=found["reasons"],
                    ecc_uncorrected_increase=found.get("ecc", 0.0),
                    remapped_rows_pending=found.get("pending", False),
                    remapped_rows_failed=found.get("failed", False),
                    remedies=remedies,
                )
            )
            if diagnosis.fault_class != gpufault.HEALTHY:
                labels = {"instance": instance, "gpu": gpu, "uuid": uuid}
                states.append(GpuState(labels, diagnosis))
        return states

    def _find(self, now: float) -> list[security.Finding]:
        config = self._config
        counts = self._instant("aiops_gpu_processes", now)
        lowest_sm = self._instant(
            promql.over_window(
                "min_over_time",
                "aiops_gpu_process_sm_utilization_ratio",
                config.mining_window_seconds,
            ),
            now,
        )
        highest_memory = self._instant(
            promql.over_window(
                "max_over_time",
                "aiops_gpu_process_memory_used_bytes",
                config.mining_window_seconds,
            ),
            now,
        )
        processes = []
        for key, count in counts.items():
            labels = dict(key)
            processes.append(
                security.GpuProcess(
                    instance=labels.get("instance", ""),
                    gpu=labels.get("gpu", ""),
                    command=labels.get("command", ""),
                    user=labels.get("user", ""),
                    container_id=labels.get("container_id", ""),
                    processes=count,
                    min_sm_ratio=lowest_sm.get(key),
                    max_memory_bytes=highest_memory.get(key),
                )
            )

        findings = security.unowned(
            processes, config.allowed_gpu_users, config.allowed_gpu_containers
        )
        findings += security.mining(
            processes,
            config.miner_names,
            config.mining_min_sm_ratio,
            config.mining_max_memory_bytes,
        )
        now_users = _by(self._instant(promql.gpu_users(), now), ("instance", "user"))
        before = _by(
            self._instant(
                promql.gpu_users(
                    config.new_user_lookback_seconds, config.window_seconds
                ),
                now,
            ),
            ("instance", "user"),
        )
        findings += security.new_users(now_users, before)
        failures = _by(
            self._instant(promql.auth_failures(config.auth_window_seconds), now),
            ("job", "instance"),
        )
        findings += security.auth_bursts(failures, threshold=0.0)
        return findings


def _candidate(source: Source, series: _Series) -> Candidate:
    labels = dict(series.labels)
    container = labels.get("container_id", "")
    if container:
        kind, name = "container", container
    else:
        kind = source.kind
        name = f"{labels.get('command', '?')} ({labels.get('user', '?')})"
        if source.kind == "gpu" or not labels.get("command"):
            kind, name = "gpu", f"GPU {labels.get('gpu', '?')}"
    return Candidate(kind, name, labels, list(series.points))


def _by(
    values: Mapping[tuple[tuple[str, str], ...], float], names: tuple[str, str]
) -> dict[tuple[str, str], float]:
    summed: dict[tuple[str, str], float] = {}
    for key, value in values.items():
        labels = dict(key)
        ident = (labels.get(names[0], ""), labels.get(names[1], ""))
        summed[ident] = summed.get(ident, 0.0) + value
    return summed
