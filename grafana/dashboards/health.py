"""Bundle health: whether Prometheus reaches the three services, and each
service's own view of its sources, cycles, queries and workers."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.dashboards.panels import Board, instant, label_variable, q, states, table
from grafana.dashboards.panels import timeseries as ts
from grafana.dashboards.promql import quantile, rate, sel

UID = "aiops-bundle-health"
JOBS = "~aiops-.*"


def build() -> Dashboard:
    board = Board(
        UID,
        "prom-aiops / Bundle health",
        "The exporter, detector and receiver: up, fresh, fast and error-free.",
        [
            label_variable(
                "instance",
                "Instance",
                'up{job=~"aiops-.*"}',
                "Scrape targets of the bundle to show.",
            )
        ],
    )
    up = sel("up", "instance", job=JOBS)

    board.row("Targets")
    board.add(
        states(
            "Targets up",
            "Whether Prometheus' last scrape of each target succeeded.",
            q(up, "{{job}} {{instance}}"),
            mapping={"0": "down", "1": "up"},
            healthy_when=1,
            width=24,
            height=6,
        ),
        ts(
            "Scrape duration",
            "How long each target took to answer a scrape.",
            "s",
            q(
                sel("scrape_duration_seconds", "instance", job=JOBS),
                "{{job}} {{instance}}",
            ),
            width=8,
        ),
        ts(
            "Samples per scrape",
            "Series each target exposes: the bundle's cardinality.",
            "short",
            q(
                sel("scrape_samples_scraped", "instance", job=JOBS),
                "{{job}} {{instance}}",
            ),
            width=8,
        ),
        ts(
            "Exporter memory",
            "Resident memory of each exporter process.",
            "bytes",
            q(
                sel("process_resident_memory_bytes", "instance", job="aiops-exporter"),
                "{{instance}} memory",
            ),
            width=8,
        ),
    )

    exporter = ("instance",)
    board.row("Exporter sources")
    board.add(
        ts(
            "Age of each source's data",
            "Seconds since each source last collected successfully; the "
            "exporter drops a source's data once it is stale_after_seconds old.",
            "s",
            q(
                "time() - "
                + sel(
                    "aiops_exporter_source_last_success_timestamp_seconds", *exporter
                ),
                "{{instance}} {{source}}",
            ),
            width=8,
        ),
        ts(
            "Collection time by source",
            "How long each source's last collection took.",
            "s",
            q(
                sel("aiops_exporter_source_duration_seconds", *exporter),
                "{{instance}} {{source}}",
            ),
            width=8,
        ),
        ts(
            "Source errors",
            "Failed, timed-out or skipped collections per second, by source.",
            "cps",
            q(
                rate(sel("aiops_exporter_source_errors_total", *exporter)),
                "{{instance}} {{source}}",
            ),
            width=8,
        ),
        table(
            "GPU readers",
            "Whether NVML and each Xid reader (NVML events, kernel log) work.",
            instant(sel("aiops_nvml_available", *exporter), table=True, column="NVML"),
            instant(
                sel("aiops_gpu_xid_reader_available", *exporter),
                table=True,
                column="Xid reader",
            ),
            hide=("Time", "__name__", "job"),
        ),
    )

    board.row("Detector")
    board.add(
        states(
            "Prometheus reachable",
            "Whether the detector's last cycle could query Prometheus.",
            q("aiops_detector_prometheus_up", "{{instance}}"),
            mapping={"0": "unreachable", "1": "reachable"},
            healthy_when=1,
            width=8,
        ),
        ts(
            "Cycle duration and age",
            "Duration of the last cycle, and seconds since a cycle in which "
            "every query succeeded.",
            "s",
            q("aiops_detector_cycle_duration_seconds", "{{instance}} duration"),
            q(
                "time() - aiops_detector_last_success_timestamp_seconds",
                "{{instance}} since success",
            ),
            width=8,
        ),
        ts(
            "Series",
            "Series with a model, and new series refused per second at max_series.",
            "short",
            q("aiops_detector_series_tracked", "{{instance}} tracked"),
            q(rate("aiops_detector_series_dropped_total"), "{{instance}} dropped/s"),
            width=8,
        ),
        ts(
            "Points scored",
            "Points the models scored per second.",
            "cps",
            q(rate("aiops_detector_points_scored_total"), "{{instance}}"),
            width=12,
        ),
        ts(
            "Query errors",
            "Failed detector queries per second, by query name.",
            "cps",
            q(rate("aiops_detector_query_errors_total"), "{{instance}} {{query}}"),
            width=12,
        ),
    )

    board.row("Receiver")
    board.add(
        ts(
            "Request time (p99)",
            "Time to answer an HTTP request, by handler.",
            "s",
            q(
                quantile(0.99, "aiops_webhook_request_duration_seconds", ("handler",)),
                "{{handler}}",
            ),
            width=8,
        ),
        ts(
            "Refused credentials and worker errors",
            "Requests refused for missing or wrong credentials, and worker "
            "failures by stage, per second.",
            "cps",
            q(rate("aiops_webhook_auth_failures_total"), "{{instance}} auth"),
            q(rate("aiops_webhook_worker_errors_total"), "{{instance}} {{stage}}"),
            width=8,
        ),
        ts(
            "Worker idle since",
            "Seconds since the worker last emptied its ready queue.",
            "s",
            q(
                "time() - (aiops_webhook_worker_last_success_timestamp_seconds > 0)",
                "{{instance}}",
            ),
            width=8,
        ),
    )
    return board.build()
