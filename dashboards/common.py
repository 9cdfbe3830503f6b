"""What every smartby dashboard shares: data sources, targets, variables, thresholds,
and the graph, legend and tooltip settings the panels have in common."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import TypeVar

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dbm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

from dashboards.sql import POSTGRES_PLUGIN, SqlFormat, SqlQueryBuilder

#: data source uids, fixed in deploy/grafana/provisioning and by `smartby dashboards publish`
TIMESCALEDB_UID = "smartby-timescaledb"
PROMETHEUS_UID = "smartby-prometheus"

#: every dashboard carries this tag; the dashboards link to each other through it
TAG = "smartby"

#: Europe/Oslo by default: days, "this year" and the heating season are local
DEFAULT_TIMEZONE = "Europe/Oslo"

#: the columns of a time-series query with one series per value of ``metric``
SERIES_COLUMNS = ("time", "metric", "value")


def timescaledb() -> dbm.DataSourceRef:
    return dbm.DataSourceRef(type_val=POSTGRES_PLUGIN, uid=TIMESCALEDB_UID)


def prometheus_source() -> dbm.DataSourceRef:
    return dbm.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)


def sql_target(
    raw_sql: str,
    columns: Sequence[str],
    fmt: SqlFormat = SqlFormat.TIME_SERIES,
    ref: str = "A",
) -> SqlQueryBuilder:
    """A SQL target; `columns` are the result columns the panel reads, in order."""
    return (
        SqlQueryBuilder()
        .ref_id(ref)
        .datasource(timescaledb())
        .format(fmt)
        .raw_sql(textwrap.dedent(raw_sql).strip())
        .columns(*columns)
    )


def prom_target(
    expr: str, legend: str, ref: str = "A", instant: bool = False
) -> prometheus.Dataquery:
    query = (
        prometheus.Dataquery()
        .ref_id(ref)
        .datasource(prometheus_source())
        .editor_mode(QueryEditorMode.CODE)
        .expr(expr)
        .legend_format(legend)
    )
    if instant:
        query.instant().format(PromQueryFormat.TABLE)
    else:
        query.range()
    return query


def thresholds(base: str, *steps: tuple[float, str]) -> db.ThresholdsConfig:
    """Absolute thresholds: `base` below the first step, then each (value, colour)."""
    return (
        db.ThresholdsConfig()
        .mode(dbm.ThresholdsMode.ABSOLUTE)
        .steps(
            [dbm.Threshold(value=None, color=base)]
            + [dbm.Threshold(value=value, color=color) for value, color in steps]
        )
    )


def value_texts(
    texts: Mapping[int, tuple[str, str]] | Mapping[str, tuple[str, str]],
) -> list[dbm.ValueMapping]:
    """Value mappings {value: (text, colour)} for coded values such as index levels,
    listed in the order given."""
    return [
        dbm.ValueMap(
            options={
                str(value): dbm.ValueMappingResult(text=text, color=color, index=i)
                for i, (value, (text, color)) in enumerate(texts.items())
            }
        )
    ]


_Variable = TypeVar("_Variable", db.QueryVariable, db.CustomVariable)


def multi_with_all(variable: _Variable) -> _Variable:
    """Several values at once, with All offered and selected to start with.

    Used in SQL as ``column IN ($name)``: Grafana's SQL data sources quote each
    selected value of a multi-value variable, and All sends every option.
    """
    return (
        variable.multi(True)
        .include_all(True)
        .current(dbm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def sql_variable(name: str, label: str, query: str) -> db.QueryVariable:
    """A multi-value variable whose options (``__value``, ``__text``) come from the
    database each time the dashboard loads, in the query's order."""
    return multi_with_all(
        db.QueryVariable(name)
        .label(label)
        .datasource(timescaledb())
        .query(query)
        .refresh(dbm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dbm.VariableSort.DISABLED)
    )


def site_variable(device_kind: str, label: str) -> db.QueryVariable:
    """`$site`: the sites with devices of one kind, multi-select with All (the default)."""
    return sql_variable(
        "site",
        label,
        "SELECT s.id AS __value, s.name AS __text FROM sites s WHERE EXISTS "
        "(SELECT 1 FROM devices d WHERE d.site_id = s.id AND d.kind = "
        f"'{device_kind}') ORDER BY s.name",
    )


def base_dashboard(
    uid: str,
    title: str,
    description: str,
    tags: Sequence[str],
    timezone: str,
    time_from: str = "now-7d",
    refresh: str = "5m",
) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG, *tags])
        .timezone(timezone)
        .time(time_from, "now")
        .refresh(refresh)
        .tooltip(dbm.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .link(
            db.DashboardLink("smartby dashboards")
            .type(dbm.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(False)
            .keep_time(True)
        )
    )


def display(name: str) -> dbm.DynamicConfigValue:
    return dbm.DynamicConfigValue(id_val="displayName", value=name)


def unit(name: str) -> dbm.DynamicConfigValue:
    return dbm.DynamicConfigValue(id_val="unit", value=name)


def cell(kind: str) -> dbm.DynamicConfigValue:
    """A table column's cell display: ``color-background``, ``color-text``, ``gauge``."""
    options: dict[str, object] = {"type": kind}
    if kind == "gauge":
        options["mode"] = "basic"
    return dbm.DynamicConfigValue(id_val="custom.cellOptions", value=options)


def column_thresholds(base: str, *steps: tuple[float, str]) -> dbm.DynamicConfigValue:
    return dbm.DynamicConfigValue(id_val="thresholds", value=thresholds(base, *steps).build())


def decimals(places: int) -> dbm.DynamicConfigValue:
    return dbm.DynamicConfigValue(id_val="decimals", value=places)


def fixed_colour(colour: str) -> dbm.DynamicConfigValue:
    return dbm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": colour})


def graph(
    title: str, description: str, unit_id: str, *, span: int, height: int
) -> timeseries.Panel:
    """A time-series panel whose axis starts at zero: everything graphed here is a
    concentration, an amount, a count, a rate, a duration or a share."""
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .span(span)
        .height(height)
        .unit(unit_id)
        .min(0)
    )


def day_bars(
    title: str,
    description: str,
    unit_id: str,
    query: str,
    columns: Sequence[str] = SERIES_COLUMNS,
    *,
    span: int,
    height: int,
) -> timeseries.Panel:
    """A bar a local day, in whole units, from a query over a daily table; each bar starts
    at its day's ``day_start`` and covers the day it counts."""
    return (
        graph(title, description, unit_id, span=span, height=height)
        .interval("1d")
        .with_target(sql_target(query, columns))
        .decimals(0)
        .draw_style(cm.GraphDrawStyle.BARS)
        .bar_alignment(cm.BarAlignment.AFTER)
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(tooltip_all_series())
    )


def legend_table(*calcs: str) -> cb.VizLegendOptions:
    """The series as a table right of the graph, with these reducers (``mean``, ``max``…)."""
    return (
        cb.VizLegendOptions()
        .display_mode(cm.LegendDisplayMode.TABLE)
        .placement(cm.LegendPlacement.RIGHT)
        .show_legend(True)
        .calcs(list(calcs))
    )


def tooltip_all_series() -> cb.VizTooltipOptions:
    """The tooltip lists every series at the cursor, highest first."""
    return cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)


def dashed_threshold_lines() -> cb.GraphThresholdsStyleConfig:
    """The panel's thresholds drawn across the graph as dashed lines."""
    return cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)


def stacked() -> cb.StackingConfig:
    """Series stacked on each other: the top is the total."""
    return cb.StackingConfig().mode(cm.StackingMode.NORMAL)
