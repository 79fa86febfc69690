"""The few panel and variable shapes the dashboards are made of, on top of
grafana-foundation-sdk's builders, so that every dashboard reads the same way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from string import ascii_uppercase
from typing import TypeVar

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pq
from grafana_foundation_sdk.builders import stat as stat_builder
from grafana_foundation_sdk.builders import statetimeline
from grafana_foundation_sdk.builders import table as table_builder
from grafana_foundation_sdk.builders import timeseries as ts_builder
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

PanelT = TypeVar(
    "PanelT",
    ts_builder.Panel,
    stat_builder.Panel,
    table_builder.Panel,
    statetimeline.Panel,
)

# Every panel and query variable reads the data source the user picked.
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["prom-aiops"]
DEFAULT_RANGE = ("now-1h", "now")
# CPU in cores, counted or busy: one unit for every CPU panel.
CORES = "suffix: cores"


@dataclass(frozen=True)
class Query:
    """One PromQL target: a range query unless `instant`; `column` names its
    value in a table that merges several queries."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False
    column: str = ""


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def instant(
    expr: str, legend: str = "", table: bool = False, column: str = ""
) -> Query:
    return Query(expr, legend, instant=True, table=table, column=column)


def _targets(panel: PanelT, queries: Sequence[Query]) -> PanelT:
    """Add `queries` to `panel` as targets A, B, C, ..."""
    if len(queries) > len(ascii_uppercase):
        raise ValueError(f"at most {len(ascii_uppercase)} queries a panel")
    for ref, query in zip(ascii_uppercase, queries, strict=False):
        target = pq.Dataquery().expr(query.expr).ref_id(ref).datasource(DATASOURCE)
        target = target.instant() if query.instant else target.range()
        if query.legend:
            target = target.legend_format(query.legend)
        if query.table:
            target = target.format(PromQueryFormat.TABLE)
        panel = panel.with_target(target)
    return panel


class Board:
    """A dashboard being laid out: rows of panels, 24 columns wide, with the
    data source variable first and a menu of the bundle's other dashboards."""

    def __init__(
        self,
        uid: str,
        title: str,
        description: str,
        variables: Sequence[cogbuilder.Builder[dm.VariableModel]] = (),
    ) -> None:
        self._builder = (
            db.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(TAGS)
            .time(*DEFAULT_RANGE)
            .refresh("30s")
            .timezone("browser")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .readonly()
            .with_variable(datasource_variable())
            # The other dashboards, found by tag, keeping time and variables.
            .link(
                db.DashboardLink("prom-aiops")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags(TAGS)
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
                .icon("external link")
                .tooltip("")
                .url("")
                .target_blank(False)
            )
        )
        for variable in variables:
            self._builder = self._builder.with_variable(variable)

    def row(self, title: str) -> Board:
        self._builder = self._builder.with_row(db.Row(title))
        return self

    def add(self, *panels: cogbuilder.Builder[dm.Panel]) -> Board:
        for panel in panels:
            self._builder = self._builder.with_panel(panel)
        return self

    def build(self) -> dm.Dashboard:
        """The dashboard model, panels numbered from 1 in layout order."""
        model = self._builder.build()
        for number, panel in enumerate(model.panels or [], start=1):
            panel.id_val = number
        return model


def datasource_variable() -> db.DatasourceVariable:
    return (
        db.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .regex("")
    )


def label_variable(
    name: str, label: str, series: str, description: str
) -> db.QueryVariable:
    """A multi-value variable over the values of `name` on `series`."""
    return (
        db.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(
            {
                "qryType": 1,
                "query": f"label_values({series}, {name})",
                "refId": "PrometheusVariableQueryEditor-VariableQuery",
            }
        )
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.NATURAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def text_variable(
    name: str, label: str, default: str, description: str
) -> db.TextBoxVariable:
    """A free-text variable, e.g. a URL that links are built from."""
    return (
        db.TextBoxVariable(name)
        .label(label)
        .description(description)
        .default_value(default)
        .current(dm.VariableOption(selected=True, text=default, value=default))
    )


def link(title: str, url: str) -> db.DashboardLink:
    """A data link: `url` opens in a new tab from a value of the panel.

    Grafana fills `${__data.fields.<label>}` in `url` from the row or series
    clicked, and `${variable}` from the dashboard's variables.
    """
    # The SDK types data links as dashboard links; Grafana reads only title,
    # url and targetBlank of them and ignores the rest.
    return (
        db.DashboardLink(title)
        .type(dm.DashboardLinkType.LINK)
        .url(url)
        .target_blank(True)
        .icon("external link")
        .tooltip(title)
    )


def timeseries(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
    soft_max: float | None = None,
) -> ts_builder.Panel:
    panel = (
        ts_builder.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .show_points(cm.VisibilityMode.NEVER)
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            cb.VizTooltipOptions()
            .mode(cm.TooltipDisplayMode.MULTI)
            .sort(cm.SortOrder.DESCENDING)
        )
    )
    if stacked:
        panel = panel.stacking(
            cb.StackingConfig().mode(cm.StackingMode.NORMAL).group("A")
        )
    if soft_max is not None:
        panel = panel.axis_soft_min(0).axis_soft_max(soft_max)
    return _targets(panel, queries)


def band(
    title: str, description: str, unit: str, *queries: Query, width: int = 24
) -> ts_builder.Panel:
    """A time series whose series named `... lower`/`... upper` are drawn dashed."""
    dashed = [
        dm.DynamicConfigValue(
            id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
        ),
        dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
    ]
    return timeseries(
        title, description, unit, *queries, width=width
    ).override_by_regexp(".*(lower|upper)$", dashed)


def stat(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 4,
    height: int = 4,
    red_above: float | None = None,
    no_value: str | None = None,
) -> stat_builder.Panel:
    """A big number; `no_value` is shown when the query returns nothing."""
    steps = [dm.Threshold(value=None, color="green")]
    if red_above is not None:
        steps.append(dm.Threshold(value=red_above, color="red"))
    panel = (
        stat_builder.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(cm.BigValueGraphMode.AREA)
        .color_mode(cm.BigValueColorMode.VALUE)
        .text_mode(cm.BigValueTextMode.AUTO)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps))
    )
    if no_value is not None:
        panel = panel.no_value(no_value)
    return _targets(panel, queries)


def table(
    title: str,
    description: str,
    *queries: Query,
    unit: str = "short",
    width: int = 24,
    height: int = 8,
    hide: Sequence[str] = ("Time", "__name__"),
    column_units: dict[str, str] | None = None,
    links: Sequence[db.DashboardLink] = (),
) -> table_builder.Panel:
    """Instant queries merged into one row per series, `hide` columns left out.

    With several queries, each value column ("Value #A", "Value #B", ...) takes
    its query's `column` as name, unless `hide` leaves it out. `unit` is the
    value columns' unit; `column_units` sets others by their shown name.
    """
    renames = _column_names(title, queries, hide)
    panel = (
        table_builder.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {name: True for name in hide},
                    "renameByName": renames,
                },
            )
        )
    )
    for column, column_unit in (column_units or {}).items():
        panel = panel.override_by_name(
            column, [dm.DynamicConfigValue(id_val="unit", value=column_unit)]
        )
    if links:
        panel = panel.data_links(list(links))
    return _targets(panel, queries)


def _column_names(
    title: str, queries: Sequence[Query], hide: Sequence[str]
) -> dict[str, str]:
    """Grafana's value column of each merged query -> the query's `column`."""
    # One query's value column is plain "Value"; only merged ones are numbered.
    if len(queries) < 2:
        return {}
    renames = {}
    for ref, query in zip(ascii_uppercase, queries, strict=False):
        value = f"Value #{ref}"
        if query.column:
            renames[value] = query.column
        elif value not in hide:
            raise ValueError(f"table {title!r}: query {ref} needs a column name")
    return renames


def states(
    title: str,
    description: str,
    *queries: Query,
    width: int = 12,
    height: int = 8,
    mapping: dict[str, str] | None = None,
    healthy_when: int | None = None,
) -> statetimeline.Panel:
    """A state timeline of 0/1 series named by `mapping` (value -> text): 1 in
    orange and 0 left blank, or green and red when `healthy_when` says which
    value is the good one."""
    mapping = mapping or {"0": "off", "1": "on"}
    colors = {"0": "transparent", "1": "orange"}
    if healthy_when is not None:
        colors = {str(healthy_when): "green", str(1 - healthy_when): "red"}
    options = {
        key: dm.ValueMappingResult(text=text, color=colors.get(key, "blue"), index=n)
        for n, (key, text) in enumerate(mapping.items())
    }
    panel = (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        # The 0/1 values are shown through `mapping`; the unit only says so.
        .unit("bool")
        .span(width)
        .height(height)
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .fill_opacity(70)
        .line_width(0)
        .mappings([dm.ValueMap(options=options)])
    )
    return _targets(panel, queries)
