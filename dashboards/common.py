"""What every smartby dashboard shares: data sources, targets, variables, thresholds."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus
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


def value_texts(texts: dict[int, tuple[str, str]]) -> list[dbm.ValueMapping]:
    """Value mappings {value: (text, colour)} for coded values such as index levels."""
    return [
        dbm.ValueMap(
            options={
                str(value): dbm.ValueMappingResult(text=text, color=color, index=i)
                for i, (value, (text, color)) in enumerate(sorted(texts.items()))
            }
        )
    ]


def site_variable(device_kind: str, label: str) -> db.QueryVariable:
    """`$site`: the sites with devices of one kind, multi-select with All (the default).

    Used in SQL as ``site_id IN ($site)``: Grafana's SQL data sources quote each
    selected value of a multi-value variable, and All sends every option.
    """
    return (
        db.QueryVariable("site")
        .label(label)
        .datasource(timescaledb())
        .query(
            "SELECT s.id AS __value, s.name AS __text FROM sites s WHERE EXISTS "
            "(SELECT 1 FROM devices d WHERE d.site_id = s.id AND d.kind = "
            f"'{device_kind}') ORDER BY s.name"
        )
        .refresh(dbm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dbm.VariableSort.DISABLED)
        .multi(True)
        .include_all(True)
        .current(dbm.VariableOption(selected=True, text=["All"], value=["$__all"]))
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
