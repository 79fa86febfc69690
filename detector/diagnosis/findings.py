"""The security findings: GPU processes and auth failures read from the
exporter's metrics in Prometheus, judged by security's rules.
"""

from __future__ import annotations

from collections.abc import Mapping

from detector.diagnosis import promql, security
from detector.diagnosis.config import DiagnosisConfig
from detector.diagnosis.reader import Reader


def security_findings(
    reader: Reader, config: DiagnosisConfig, now: float
) -> list[security.Finding]:
    """Unowned and mining GPU processes, new GPU users and auth bursts."""
    counts = reader.instant("aiops_gpu_processes", now)
    lowest_sm = reader.instant(
        promql.over_window(
            "min_over_time",
            "aiops_gpu_process_sm_utilization_ratio",
            config.mining_window_seconds,
        ),
        now,
    )
    highest_memory = reader.instant(
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
    now_users = _by(reader.instant(promql.gpu_users(), now), ("instance", "user"))
    before = _by(
        reader.instant(
            promql.gpu_users(config.new_user_lookback_seconds, config.window_seconds),
            now,
        ),
        ("instance", "user"),
    )
    findings += security.new_users(now_users, before)
    failures = _by(
        reader.instant(promql.auth_failures(config.auth_window_seconds), now),
        ("job", "instance"),
    )
    findings += security.auth_bursts(failures, threshold=0.0)
    return findings


def _by(
    values: Mapping[tuple[tuple[str, str], ...], float], names: tuple[str, str]
) -> dict[tuple[str, str], float]:
    summed: dict[tuple[str, str], float] = {}
    for key, value in values.items():
        labels = dict(key)
        ident = (labels.get(names[0], ""), labels.get(names[1], ""))
        summed[ident] = summed.get(ident, 0.0) + value
    return summed
