"""Anomalies: each scored series against the band the detector expects, its
score and decisions, and the anomaly alerts that fired with their cause."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.dashboards.panels import (
    Board,
    band,
    instant,
    label_variable,
    q,
    stat,
    states,
    table,
)
from grafana.dashboards.panels import timeseries as ts
from grafana.dashboards.promql import sel

UID = "aiops-anomalies"
SCOPE = ("query", "instance")
LEGEND = "{{query}} {{instance}} {{gpu}}"
ANOMALY_ALERTS = "AiopsSeriesAnomaly|AiopsHostCpuAnomaly"


def a(metric: str, **matchers: str) -> str:
    """`metric` for the selected detector queries and hosts."""
    return sel(metric, *SCOPE, **matchers)


def build() -> Dashboard:
    board = Board(
        UID,
        "prom-aiops / Anomalies",
        "What the detector scores: actual values against the expected band, "
        "scores, decisions and the alerts they raised.",
        [
            label_variable(
                "query",
                "Detector query",
                "aiops_anomaly_score",
                "Queries of the detector's config (label query).",
            ),
            label_variable(
                "instance",
                "Host",
                'aiops_anomaly_score{query=~"$query"}',
                "Source hosts of the scored series.",
            ),
        ],
    )

    board.row("Now")
    board.add(
        stat(
            "Anomalous series",
            "Series whose latest decision is anomalous.",
            "short",
            instant(f"sum({a('aiops_anomaly_decision')})"),
            red_above=1,
        ),
        stat(
            "Series scored",
            "Series the detector exports a score for.",
            "short",
            instant(f"count({a('aiops_anomaly_score')})"),
        ),
        stat(
            "Models warming up",
            "Series whose model has not seen enough points to decide yet.",
            "short",
            instant(f"sum(1 - {a('aiops_anomaly_model_warm')})"),
        ),
        stat(
            "Anomaly alerts firing",
            "Anomaly alerts Prometheus holds as firing.",
            "short",
            instant(
                "count("
                + sel("ALERTS", alertname=f"~{ANOMALY_ALERTS}", alertstate="firing")
                + ")"
            ),
            red_above=1,
            no_value="0",
        ),
    )

    board.row("Actual against expected")
    board.add(
        band(
            "Actual value and expected band",
            "The latest scored value of each series, the value the model "
            "expected, and the band (dashed) outside of which a point is "
            "anomalous.",
            "short",
            q(a("aiops_anomaly_observed_value"), f"{LEGEND} actual"),
            q(a("aiops_anomaly_expected_value"), f"{LEGEND} expected"),
            q(a("aiops_anomaly_expected_lower"), f"{LEGEND} lower"),
            q(a("aiops_anomaly_expected_upper"), f"{LEGEND} upper"),
        ),
        ts(
            "Anomaly score",
            "Score of the latest point in 0-1; 0.5 and above means the robust "
            "z-score reached the threshold.",
            "percentunit",
            q(a("aiops_anomaly_score"), LEGEND),
            soft_max=1,
        ),
        states(
            "Decisions",
            "1 while a series is anomalous and its model is warm.",
            q(a("aiops_anomaly_decision"), LEGEND),
            mapping={"0": "normal", "1": "anomalous"},
        ),
    )

    board.row("Alerts and causes")
    board.add(
        table(
            "Anomaly alerts with their cause",
            "Firing anomaly alerts; for host CPU, command and user name the "
            "process group that used the most CPU on that host.",
            instant(
                sel("ALERTS", alertname=f"~{ANOMALY_ALERTS}", alertstate="firing"),
                table=True,
            ),
            hide=("Time", "__name__", "Value", "alertstate"),
        ),
    )
    return board.build()
