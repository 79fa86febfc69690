"""The diagnosis cycle: for each anomaly the detector holds, fetch candidate
series from Prometheus and rank them; diagnose GPUs; gather security findings.
Publishes one immutable DiagnosisSnapshot; needs a range-query function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from detector.diagnosis import pattern, promql, security
from detector.diagnosis.config import DiagnosisConfig
from detector.diagnosis.findings import security_findings
from detector.diagnosis.gpustate import GpuState, diagnose_gpus
from detector.diagnosis.reader import QueryRange, Reader, SeriesLike
from detector.diagnosis.rootcause import Candidate, Ranking, Window, rank_causes
from detector.prometheus import QueryError

log = logging.getLogger(__name__)

STAGES = ("rootcause", "gpu", "security")


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
        self._reader = Reader(query_range, config.step_seconds)
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
        config, reader = self._config, self._reader

        stages = [
            ("rootcause", lambda: incidents.extend(self._rank_all(anomalies, started))),
            ("gpu", lambda: gpus.extend(diagnose_gpus(reader, config, started))),
            (
                "security",
                lambda: findings.extend(security_findings(reader, config, started)),
            ),
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

        series = self._reader.range(promql.candidates(source.metric, matchers), window)
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


def _candidate(source: Source, series: SeriesLike) -> Candidate:
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
