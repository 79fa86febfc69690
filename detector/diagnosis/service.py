"""The diagnosis cycle: for each anomaly the detector holds, fetch candidate
series from Prometheus and rank them; diagnose GPUs; gather security findings.
Publishes one immutable DiagnosisSnapshot; needs a range-query function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from detector.diagnosis import security
from detector.diagnosis.config import DiagnosisConfig
from detector.diagnosis.findings import security_findings
from detector.diagnosis.gpustate import GpuState, diagnose_gpus
from detector.diagnosis.incident import (
    DEFAULT_SOURCES,
    Anomaly,
    CauseSearch,
    Incident,
    Source,
)
from detector.diagnosis.reader import QueryRange, Reader
from detector.prometheus import QueryError

log = logging.getLogger(__name__)

STAGES = ("rootcause", "gpu", "security")


@dataclass(frozen=True)
class DiagnosisSnapshot:
    """Everything the diagnosis collector shows, as of one cycle."""

    incidents: tuple[Incident, ...] = ()
    gpus: tuple[GpuState, ...] = ()
    findings: tuple[security.Finding, ...] = ()
    errors: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    cycle_duration_seconds: float = 0.0
    last_success_timestamp_seconds: float = 0.0


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
        self._causes = CauseSearch(config, self._reader, sources)
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
        causes, config, reader = self._causes, self._config, self._reader

        stages = [
            ("rootcause", lambda: incidents.extend(causes.diagnose_all(anomalies))),
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
