"""The committed dashboards are what the code builds, pass the SDK's model,
keep their UIDs, and use only variables they define."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from grafana.dashboards.panels import CORES, instant, table
from grafana.render import JSON_DIR, main, model_problems, render_all

PROVISIONING = JSON_DIR.parent / "provisioning"

# Links and bookmarks point at these; changing one is a deliberate act.
UIDS = {
    "fleet-overview.json": "aiops-fleet-overview",
    "gpu-detail.json": "aiops-gpu-detail",
    "processes.json": "aiops-processes",
    "anomalies.json": "aiops-anomalies",
    "incidents.json": "aiops-incidents",
    "recommendations.json": "aiops-recommendations",
    "actions.json": "aiops-actions",
    "bundle-health.json": "aiops-bundle-health",
}
GRAFANA_VARIABLES = {"__rate_interval", "__range", "__interval"}
# Series counted in CPU cores: logical CPUs, busy cores, sized cores.
CPU_CORES = re.compile(r"logical_cpus|cpu_seconds_total|cpu_cores")


def committed() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(JSON_DIR.glob("*.json"))}


def targets(dashboard: dict) -> list[dict]:
    return [t for panel in dashboard["panels"] for t in panel.get("targets", [])]


def test_committed_json_is_what_the_code_builds():
    built = render_all()

    assert sorted(built) == sorted(p.name for p in JSON_DIR.glob("*.json"))
    for name, text in built.items():
        assert (JSON_DIR / name).read_text() == text, (
            f"run `python -m grafana` ({name})"
        )


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    for name, text in render_all().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "actions.json").write_text("{}\n")

    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert "actions.json" in capsys.readouterr().err
    assert (tmp_path / "actions.json").read_text() == "{}\n"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_dashboard_passes_the_sdk_model(name):
    assert model_problems(committed()[name]) == []


def test_the_model_check_finds_unknown_keys_and_panel_types():
    dashboard = committed()["anomalies.json"]
    panel = next(p for p in dashboard["panels"] if p["type"] == "timeseries")
    panel["options"]["legend"]["showLegnd"] = True
    dashboard["panels"][0]["type"] = "no-such-panel"

    problems = model_problems(dashboard)

    assert any("showLegnd: not in the model" in p for p in problems)
    assert any("unknown type 'no-such-panel'" in p for p in problems)


def test_uids_are_stable_and_unique():
    assert {name: d["uid"] for name, d in committed().items()} == UIDS


@pytest.mark.parametrize("name", sorted(UIDS))
def test_queries_use_only_defined_variables(name):
    dashboard = committed()[name]
    defined = {v["name"] for v in dashboard["templating"]["list"]}

    assert "datasource" in defined
    for target in targets(dashboard):
        used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
        assert used <= defined | GRAFANA_VARIABLES, target["expr"]
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        # Counter windows follow the scrape interval through Grafana, never a
        # fixed duration that breaks with a longer scrape interval.
        for window in re.findall(r"\[([^\]]+)\]", target["expr"]):
            assert window in ("$__rate_interval", "$__range"), target["expr"]


def test_provisioning_points_at_the_committed_json():
    provider = yaml.safe_load(
        (PROVISIONING / "dashboards" / "prom-aiops.yml").read_text()
    )["providers"][0]
    source = yaml.safe_load(
        (PROVISIONING / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]

    assert provider["type"] == "file"
    assert provider["options"]["path"].endswith("/prom-aiops")
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True


def test_the_checks_find_what_grafana_would_show_wrong():
    dashboard = committed()["incidents.json"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    first, second, table = panels[0], panels[1], panels[5]
    first["datasource"] = {"type": "prometheus", "uid": "prometheus"}
    del second["fieldConfig"]["defaults"]["unit"]
    second["gridPos"] = dict(first["gridPos"])
    table["fieldConfig"]["defaults"]["links"][0]["url"] += "&x=${recevier}"
    table["targets"][0]["expr"] += ' unless up{job=~"$job"}'

    problems = model_problems(dashboard)

    assert f"panel {first['title']!r}: data source is not ${{datasource}}" in problems
    assert f"panel {second['title']!r}: no unit" in problems
    assert f"panel {second['title']!r} overlaps {first['title']!r}" in problems
    assert (
        f"panel {table['title']!r}: $recevier is not a variable of the dashboard"
        in problems
    )
    assert f"panel {table['title']!r}: $job is not a variable of the dashboard" in (
        problems
    )


def test_a_panel_off_the_grid_is_found():
    dashboard = committed()["recommendations.json"]
    panel = dashboard["panels"][1]
    panel["gridPos"]["x"] = 22

    assert (
        f"panel {panel['title']!r}: gridPos {panel['gridPos']!r} is off the grid"
        in (model_problems(dashboard))
    )


def test_report_links_use_the_receivers_route():
    # The route is the receiver's (alertmanager_webhook/app.py); the live
    # panel test opens one of these links on a running receiver.
    links = [
        link["url"]
        for panel in committed()["incidents.json"]["panels"]
        for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
    ]

    assert len(links) == 3
    for url in links:
        assert url.startswith("${receiver}/api/v1/incidents/latest/report.html?")


def table_panel(dashboard: dict, title: str) -> dict:
    return next(p for p in dashboard["panels"] if p["title"] == title)


def organize(panel: dict) -> dict:
    return next(t for t in panel["transformations"] if t["id"] == "organize")


def test_merged_tables_name_their_value_columns():
    panel = table_panel(committed()["recommendations.json"], "CPU: recommendations now")

    assert organize(panel)["options"]["renameByName"] == {
        "Value #A": "allocated",
        "Value #B": "lower",
        "Value #C": "target",
        "Value #D": "upper",
    }


def test_the_table_check_finds_value_columns_left_unnamed():
    incidents = committed()["incidents.json"]
    causes = table_panel(incidents, "Ranked causes")
    del organize(causes)["options"]["renameByName"]["Value #A"]
    causes["fieldConfig"]["overrides"][0]["matcher"]["options"] = "Value #B"
    health = committed()["bundle-health.json"]
    table_panel(health, "GPU readers")["transformations"] = []

    problems = model_problems(incidents) + model_problems(health)

    assert "panel 'Ranked causes': column 'Value #A' is not renamed" in problems
    assert (
        "panel 'Ranked causes': override of 'Value #B' matches nothing once it "
        "is renamed" in problems
    )
    assert "panel 'GPU readers': its queries are not merged" in problems
    assert "panel 'GPU readers': column 'Value #B' is not renamed" in problems


def test_a_merged_table_needs_a_name_for_each_value_column():
    with pytest.raises(ValueError, match="query B needs a column name"):
        table("t", "d", instant("up", column="up"), instant("up"))

    hidden = table(
        "t", "d", instant("up"), instant("up", column="b"), hide=["Value #A"]
    )
    assert hidden.build().transformations[1].options["renameByName"] == {
        "Value #B": "b"
    }


@pytest.mark.parametrize("name", sorted(UIDS))
def test_cpu_panels_count_cores(name):
    for panel in committed()[name]["panels"]:
        exprs = " ".join(t["expr"] for t in panel.get("targets", []))
        if CPU_CORES.search(exprs):
            assert panel["fieldConfig"]["defaults"]["unit"] == CORES, panel["title"]
