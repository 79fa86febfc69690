"""The diagnosis cycle over a fake range-query function, and its metrics on a
fresh registry."""

from __future__ import annotations

import logging
from typing import NamedTuple

import pytest
from prometheus_client import CollectorRegistry

from detector.diagnosis.collector import DiagnosisCollector
from detector.diagnosis.config import DiagnosisConfig
from detector.diagnosis.incident import Anomaly
from detector.diagnosis.service import Diagnoser
from detector.prometheus import PrometheusUnreachable

NOW = 1_700_000_000.0
HOST = "node-1:9842"


class Series(NamedTuple):
    labels: dict[str, str]
    points: list[tuple[float, float]]


def ramp(before: float, after: float, start: float, end: float, step: float = 60.0):
    points, t = [], start
    while t <= end:
        points.append((t, before if t < NOW - 900 else after))
        t += step
    return points


class FakeProm:
    """Answers the diagnosis' queries from canned series; records each query."""

    def __init__(self, answers: dict[str, list[Series]], fail: str = "") -> None:
        self.answers = answers
        self.fail = fail
        self.queries: list[str] = []

    def __call__(self, promql: str, start: float, end: float, step: float):
        self.queries.append(promql)
        if self.fail and self.fail in promql:
            raise RuntimeError("prometheus said no")
        for prefix, series in self.answers.items():
            if promql.startswith(prefix):
                return [
                    Series(
                        s.labels,
                        [p for p in s.points if start <= p[0] <= end] or s.points,
                    )
                    for s in series
                ]
        return []


def group(command: str, user: str, before: float, after: float) -> Series:
    labels = {"instance": HOST, "command": command, "user": user, "container_id": ""}
    return Series(labels, ramp(before, after, NOW - 4500, NOW))


@pytest.fixture
def prom() -> FakeProm:
    return FakeProm(
        {
            "aiops_process_group_cpu_usage_ratio": [
                group("stress", "alice", 0.01, 0.6),
                group("java", "bob", 0.2, 0.2),
            ],
            "aiops_gpu_processes": [
                Series(
                    {
                        "instance": HOST,
                        "gpu": "0",
                        "command": "xmrig",
                        "user": "eve",
                        "container_id": "",
                    },
                    [(NOW, 1.0)],
                )
            ],
            "(aiops_gpu_xid_errors_total": [
                Series(
                    {
                        "instance": HOST,
                        "gpu": "1",
                        "uuid": "GPU-1",
                        "xid": "79",
                        "action": "reboot",
                    },
                    [(NOW, 2.0)],
                )
            ],
            "resets(aiops_gpu_xid_errors_total": [
                Series(
                    {
                        "instance": HOST,
                        "gpu": "1",
                        "uuid": "GPU-1",
                        "xid": "79",
                        "action": "reboot",
                    },
                    [(NOW, 1.0)],
                )
            ],
            "aiops_gpu_health_state": [
                Series(
                    {"instance": HOST, "gpu": "2", "uuid": "GPU-2", "state": "lost"},
                    [(NOW, 1.0)],
                ),
                Series(
                    {"instance": HOST, "gpu": "3", "uuid": "GPU-3", "state": "healthy"},
                    [(NOW, 1.0)],
                ),
            ],
            "aiops_gpu_xid_last_seen_timestamp_seconds": [
                Series(
                    {
                        "instance": HOST,
                        "gpu": "1",
                        "uuid": "GPU-1",
                        "xid": "79",
                        "action": "reboot",
                    },
                    [(NOW, NOW - 30)],
                )
            ],
        }
    )


def exposition(diagnoser: Diagnoser) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(DiagnosisCollector(lambda: diagnoser.snapshot))
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_a_cycle_ranks_diagnoses_and_finds(prom):
    diagnoser = Diagnoser(DiagnosisConfig(), prom, clock=lambda: NOW)

    snapshot = diagnoser.run_cycle([Anomaly("host_cpu", {"instance": HOST}, NOW)])
    metrics = exposition(diagnoser)

    incident = snapshot.incidents[0]
    assert [c.name for c in incident.ranking.causes] == ["stress (alice)"]
    assert incident.shape == "runaway"
    ranks = {k: v for k, v in metrics.items() if k[0] == "aiops_rootcause_rank"}
    (((_, labels), rank),) = ranks.items()
    assert rank == 1
    assert dict(labels)["command"] == "stress" and dict(labels)["query"] == "host_cpu"
    fault = [dict(k[1]) for k in metrics if k[0] == "aiops_gpu_fault_class"]
    assert fault == [
        {
            "instance": HOST,
            "gpu": "1",
            "uuid": "GPU-1",
            "fault_class": "drain_and_inspect",
            "escalated": "true",
        },
        {
            "instance": HOST,
            "gpu": "2",
            "uuid": "GPU-2",
            "fault_class": "reboot",
            "escalated": "false",
        },
    ]
    assert any(k[0] == "aiops_security_mining_suspected" for k in metrics)
    assert metrics[("aiops_diagnosis_errors_total", (("stage", "gpu"),))] == 0
    assert metrics[("aiops_diagnosis_last_success_timestamp_seconds", ())] == NOW


def test_a_shard_other_than_0_ranks_its_anomalies_and_leaves_the_fleet_alone(prom):
    # GPU faults and security findings are fleet-wide: a second shard that
    # exported them too would take turns with the first at the same series.
    diagnoser = Diagnoser(DiagnosisConfig(), prom, clock=lambda: NOW, fleet_wide=False)

    snapshot = diagnoser.run_cycle([Anomaly("host_cpu", {"instance": HOST}, NOW)])
    metrics = exposition(diagnoser)

    assert [c.name for c in snapshot.incidents[0].ranking.causes] == ["stress (alice)"]
    assert snapshot.gpus == () and snapshot.findings == ()
    assert not [k for k in metrics if k[0] == "aiops_gpu_fault_class"]
    assert not [k for k in metrics if k[0].startswith("aiops_security_")]
    assert metrics[("aiops_diagnosis_last_success_timestamp_seconds", ())] == NOW


def test_candidate_selectors_escape_label_values(prom):
    diagnoser = Diagnoser(DiagnosisConfig(), prom, clock=lambda: NOW)

    diagnoser.run_cycle([Anomaly("host_cpu", {"instance": 'a"b\\c'}, NOW)])

    assert 'instance="a\\"b\\\\c"' in prom.queries[0]


def test_a_failing_stage_is_counted_and_the_others_still_run(prom):
    prom.fail = "aiops_gpu_health_state"
    diagnoser = Diagnoser(DiagnosisConfig(), prom, clock=lambda: NOW)

    snapshot = diagnoser.run_cycle([Anomaly("host_cpu", {"instance": HOST}, NOW)])

    assert snapshot.errors == {"rootcause": 0, "gpu": 1, "security": 0}
    assert snapshot.incidents and snapshot.findings
    assert snapshot.last_success_timestamp_seconds == 0.0


def test_prometheus_away_is_one_warning_line_per_stage(caplog):
    def away(promql: str, start: float, end: float, step: float):
        raise PrometheusUnreachable("http://127.0.0.1:9/api/v1/query_range: refused")

    diagnoser = Diagnoser(DiagnosisConfig(), away, clock=lambda: NOW)

    with caplog.at_level(logging.WARNING, logger="detector.diagnosis.service"):
        snapshot = diagnoser.run_cycle([Anomaly("host_cpu", {"instance": HOST}, NOW)])

    assert snapshot.errors == {"rootcause": 1, "gpu": 1, "security": 1}
    assert [r.levelname for r in caplog.records] == ["WARNING"] * 3
    assert not any(r.exc_info for r in caplog.records)
    assert "refused" in caplog.records[0].getMessage()


def test_no_data_in_prometheus_gives_no_cause():
    diagnoser = Diagnoser(DiagnosisConfig(), FakeProm({}), clock=lambda: NOW)

    snapshot = diagnoser.run_cycle([Anomaly("host_cpu", {"instance": HOST}, NOW)])

    (incident,) = snapshot.incidents
    assert incident.ranking.causes == ()
    assert incident.ranking.missing == ("no candidate series in the window",)
    assert not [k for k in exposition(diagnoser) if k[0] == "aiops_rootcause_rank"]


def test_anomalies_past_the_cap_are_not_diagnosed(prom):
    config = DiagnosisConfig(max_incidents=2)
    diagnoser = Diagnoser(config, prom, clock=lambda: NOW)
    anomalies = [Anomaly("host_cpu", {"instance": f"n{i}"}, NOW) for i in range(5)]

    assert len(diagnoser.run_cycle(anomalies).incidents) == 2
