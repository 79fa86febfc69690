"""Incidents: each anomaly the detector holds, with the candidate series of its
Source fetched from Prometheus, ranked by rootcause and the top cause's shape
classified by pattern.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from detector.diagnosis import pattern, promql
from detector.diagnosis.config import DiagnosisConfig
from detector.diagnosis.reader import Reader, SeriesLike
from detector.diagnosis.rootcause import Candidate, Ranking, Window, rank_causes

log = logging.getLogger(__name__)


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


def anomalies_from(snapshot: object) -> list[Anomaly]:
    """The anomalous series of a detector Snapshot (decision 1, model warm)."""
    found = []
    for state in getattr(snapshot, "series", ()):
        if state.score.decision == 1:
            found.append(Anomaly(state.query, dict(state.labels), state.timestamp))
    return found


class CauseSearch:
    """Looks for the causes of anomalies among their Source's candidate series."""

    def __init__(
        self, config: DiagnosisConfig, reader: Reader, sources: Iterable[Source]
    ) -> None:
        self._config = config
        self._reader = reader
        self._sources = {s.query: s for s in sources}

    def diagnose_all(self, anomalies: Iterable[Anomaly]) -> list[Incident]:
        """The incidents of the newest max_incidents anomalies that have a source."""
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
