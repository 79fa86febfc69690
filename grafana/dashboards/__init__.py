"""The bundle's dashboards, each a module with a stable UID and a build()."""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.dashboards import (
    actions,
    anomalies,
    fleet,
    gpu,
    health,
    incidents,
    processes,
    recommendations,
)

# File name under grafana/json/ (without .json) -> builder. The UIDs live in
# the modules and never change, so that links and bookmarks keep working.
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "fleet-overview": fleet.build,
    "gpu-detail": gpu.build,
    "processes": processes.build,
    "anomalies": anomalies.build,
    "incidents": incidents.build,
    "recommendations": recommendations.build,
    "actions": actions.build,
    "bundle-health": health.build,
}
