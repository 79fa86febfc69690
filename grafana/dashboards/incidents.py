"""Incidents: anomalies with the causes the diagnosis ranked for them, GPU fault
classes, security findings and the firing alerts, each linked to its fault
report on the receiver."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.dashboards.panels import (
    Board,
    instant,
    label_variable,
    link,
    q,
    stat,
    states,
    table,
    text_variable,
)
from grafana.dashboards.panels import timeseries as ts
from grafana.dashboards.promql import rate, sel

UID = "aiops-incidents"
# The receiver's latest report for an alert's labels; alert rules cannot know
# an incident's id, so its API finds the newest incident by alertname and/or
# instance (alertmanager_webhook/app.py).
REPORT = "${receiver}/api/v1/incidents/latest/report.html"
AIOPS_ALERTS = {"alertname": "~Aiops.*", "alertstate": "firing"}
CAUSE_LEGEND = "{{query}} {{instance}} {{gpu}}: {{cause}}"
GPU_FINDINGS = (
    "aiops_security_unowned_gpu_processes",
    "aiops_security_mining_suspected",
    "aiops_security_new_gpu_user_gpus",
)


def build() -> Dashboard:
    board = Board(
        UID,
        "prom-aiops / Incidents",
        "Anomalies with their ranked root causes, GPU fault classes, security "
        "findings and firing alerts, with links to the receiver's fault reports.",
        [
            label_variable(
                "instance",
                "Host",
                '{__name__=~"aiops_anomaly_decision|aiops_gpu_info"}',
                "Hosts with scored series or GPUs.",
            ),
            label_variable(
                "gpu",
                "GPU",
                'aiops_gpu_info{instance=~"$instance"}',
                "GPU indices, for the GPU fault and GPU process panels.",
            ),
            text_variable(
                "receiver",
                "Receiver URL",
                "http://127.0.0.1:9844",
                "Base URL of aiops-webhook as your browser reaches it; the fault "
                "report links open there and ask for the receiver's credentials.",
            ),
        ],
    )
    causes = sel("aiops_rootcause_rank", "instance")
    shares = sel("aiops_rootcause_share_ratio", "instance")
    refusals = sel("aiops_security_auth_failures", "instance")
    faults = sel("aiops_gpu_fault_class", "instance", "gpu")
    # The three GPU finding metrics in one selector, to count them together.
    findings = sel("", "instance", __name__="~" + "|".join(GPU_FINDINGS))

    board.row("Now")
    board.add(
        stat(
            "Anomalies with a cause",
            "Anomalous series for which the diagnosis ranked at least one cause.",
            "short",
            instant(f"count({causes} == 1)"),
            no_value="0",
        ),
        stat(
            "GPUs with a fault",
            "GPUs with a diagnosed fault class; see the table below for what "
            "each needs.",
            "short",
            instant(f"count({faults} == 1)"),
            red_above=1,
            no_value="0",
        ),
        stat(
            "GPU security findings",
            "Unowned GPU processes, suspected miners and users new to a host's "
            "GPUs; each should be looked at by a person.",
            "short",
            instant(f"count({findings} > 0)"),
            red_above=1,
            no_value="0",
        ),
        stat(
            "Refused requests",
            "Requests refused for bad or missing credentials over the "
            "diagnosis' auth window, summed over the components of the selected "
            "hosts. The Host variable does not list the receiver's instance, so "
            "its refusals count only with All.",
            "short",
            instant(f"sum({refusals})"),
            red_above=30,
        ),
        stat(
            "Alerts firing",
            "The bundle's alerts (Aiops*) Prometheus holds as firing.",
            "short",
            instant(f"count({sel('ALERTS', 'instance', **AIOPS_ALERTS)})"),
            red_above=1,
            no_value="0",
            width=8,
        ),
    )

    board.row("Anomalies and their causes")
    board.add(
        table(
            "Ranked causes",
            "For each anomalous series (query, instance, gpu): the causes the "
            "diagnosis ranked, with their share of the series' change. Open the "
            "fault report from a row; act on the rank-1 cause first.",
            instant(causes, table=True, column="rank"),
            instant(shares, table=True, column="share"),
            hide=("Time", "__name__", "job"),
            column_units={"share": "percentunit"},
            links=[
                link(
                    "Fault report",
                    f"{REPORT}?alertname=AiopsAnomalyRootCause"
                    "&instance=${__data.fields.instance}",
                )
            ],
            height=9,
        ),
        ts(
            "Share of the top cause",
            "Share (0-1) of each anomalous series' change that its rank-1 cause "
            "made; near 1, that one cause explains the anomaly.",
            "percentunit",
            q(f"{shares} and {causes} == 1", CAUSE_LEGEND),
            soft_max=1,
        ),
        states(
            "Decisions",
            "1 while a scored series is anomalous; the causes above exist only "
            "while it is.",
            q(sel("aiops_anomaly_decision", "instance"), "{{query}} {{instance}}"),
            mapping={"0": "normal", "1": "anomalous"},
        ),
    )

    board.row("GPU faults")
    board.add(
        table(
            "GPU fault classes",
            "What each faulty GPU needs (application_fault, reset_gpu, reboot, "
            "drain_and_inspect, thermal_throttle, power_throttle); escalated is "
            "true when its Xid came back after the remedy. Open the host's "
            "latest fault report from a row.",
            instant(f"{faults} == 1", table=True),
            hide=("Time", "__name__", "Value", "job"),
            links=[
                link("Fault report", f"{REPORT}?instance=${{__data.fields.instance}}")
            ],
            width=14,
        ),
        ts(
            "GPUs by fault class",
            "Faulty GPUs per class over time; a class that keeps growing points "
            "at a fleet-wide cause (driver, cooling, power).",
            "short",
            q(f"count by (fault_class) ({faults})", "{{fault_class}}"),
            width=10,
        ),
    )

    board.row("Security")
    board.add(
        table(
            "GPU processes outside the allow lists",
            "Process groups on a GPU whose user and container are on no allow "
            "list, with their process count; stop them or allow their owner.",
            instant(
                sel("aiops_security_unowned_gpu_processes", "instance", "gpu"),
                table=True,
            ),
            hide=("Time", "__name__", "job"),
            width=12,
        ),
        table(
            "Suspected miners",
            "Process groups on a GPU that look like a cryptominer, by name or by "
            "full SM use with tiny memory (reason).",
            instant(
                sel("aiops_security_mining_suspected", "instance", "gpu"),
                table=True,
            ),
            hide=("Time", "__name__", "Value", "job"),
            width=12,
        ),
        table(
            "Users new to a host's GPUs",
            "Users holding GPUs (value) on a host where they held none over the "
            "lookback; confirm they should.",
            instant(sel("aiops_security_new_gpu_user_gpus", "instance"), table=True),
            hide=("Time", "__name__", "job"),
            width=12,
        ),
        ts(
            "Refused requests by component",
            "Requests each component refused for bad or missing credentials over "
            "the auth window; a lasting rise is a misconfigured sender or a probe. "
            "The receiver's show only with All.",
            "short",
            q(refusals, "{{job}} {{instance}}"),
            width=12,
        ),
    )

    board.row("Alerts")
    board.add(
        table(
            "Firing alerts",
            "The bundle's firing alerts with their labels. Open the latest fault "
            "report for the alert and host from a row.",
            instant(sel("ALERTS", "instance", **AIOPS_ALERTS), table=True),
            hide=("Time", "__name__", "Value", "alertstate"),
            links=[
                link(
                    "Fault report",
                    f"{REPORT}?alertname=${{__data.fields.alertname}}"
                    "&instance=${__data.fields.instance}",
                )
            ],
            width=16,
        ),
        ts(
            "Firing alerts by severity",
            "The bundle's firing alerts over time, by severity.",
            "short",
            q(
                f"count by (severity) ({sel('ALERTS', 'instance', **AIOPS_ALERTS)})",
                "{{severity}}",
            ),
            width=8,
        ),
    )

    board.row("Diagnosis")
    board.add(
        stat(
            "Since the last full diagnosis",
            "Time since a diagnosis cycle last succeeded in every stage; growing "
            "means causes and findings above are stale.",
            "s",
            instant("time() - max(aiops_diagnosis_last_success_timestamp_seconds > 0)"),
            width=6,
        ),
        ts(
            "Diagnosis errors by stage",
            "Failed rootcause, gpu and security stages; see the detector's log.",
            "cps",
            q(
                f"sum by (stage) ({rate('aiops_diagnosis_errors_total')})",
                "{{stage}}",
            ),
            width=9,
        ),
        ts(
            "Diagnosis cycle duration",
            "Time the last diagnosis cycle took; it runs after each detector cycle.",
            "s",
            q("aiops_diagnosis_cycle_duration_seconds", "{{instance}}"),
            width=9,
        ),
    )
    return board.build()
