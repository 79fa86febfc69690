"""The fleet's faulty GPUs: each GPU's evidence read from the exporter's GPU
metrics in Prometheus, judged by gpufault's rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from detector.diagnosis import gpufault, promql
from detector.diagnosis.config import DiagnosisConfig
from detector.diagnosis.reader import Reader


@dataclass(frozen=True)
class GpuState:
    labels: Mapping[str, str]  # instance, gpu, uuid
    diagnosis: gpufault.GpuDiagnosis


def diagnose_gpus(
    reader: Reader, config: DiagnosisConfig, now: float
) -> list[GpuState]:
    """Every GPU with evidence of a fault as of `now`, healthy ones left out."""
    evidence: dict[tuple[str, str, str], dict] = {}

    def gpu_of(key: tuple[tuple[str, str], ...]) -> dict:
        labels = dict(key)
        ident = (
            labels.get("instance", ""),
            labels.get("gpu", ""),
            labels.get("uuid", ""),
        )
        return evidence.setdefault(ident, {"xids": [], "reasons": {}})

    last_seen = reader.instant("aiops_gpu_xid_last_seen_timestamp_seconds", now)
    rebooted = reader.instant(promql.xid_resets(config.xid_lookback_seconds), now)
    for key, count in reader.instant(
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
    for key in reader.instant("aiops_gpu_health_state == 1", now):
        gpu_of(key)["health"] = dict(key).get("state", "healthy")
    for key in reader.instant("aiops_gpu_recovery_action == 1", now):
        gpu_of(key)["recovery"] = dict(key).get("action", "none")
    held = promql.over_window(
        "min_over_time",
        "aiops_gpu_clock_event_reason_active",
        config.window_seconds,
    )
    for key, value in reader.instant(f"{held} == 1", now).items():
        gpu_of(key)["reasons"][dict(key).get("reason", "")] = value
    ecc = promql.over_window(
        "increase", "aiops_gpu_ecc_uncorrected_errors_total", config.window_seconds
    )
    for key, value in reader.instant(f"{ecc} > 0", now).items():
        gpu_of(key)["ecc"] = value
    for key, _ in reader.instant("aiops_gpu_remapped_rows_pending == 1", now).items():
        gpu_of(key)["pending"] = True
    for key in reader.instant("aiops_gpu_remapped_rows_failed == 1", now):
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
