"""Traffic: volume, mean speed and heavy-vehicle share per counter, and average daily
traffic; for the roads and planning office and the public.

Only aggregates of at least 15 minutes exist in the database (privacy, DESIGN.md), and
these panels read the hourly and daily indicator tables only.  Heavy vehicles are those
longer than 5.6 m (the Norwegian length-class split the counters report).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import dashboard as dbm

from dashboards.common import (
    SERIES_COLUMNS,
    base_dashboard,
    cell,
    day_bars,
    decimals,
    display,
    graph,
    legend_table,
    site_variable,
    sql_target,
    thresholds,
    tooltip_all_series,
    unit,
)
from dashboards.sql import SqlFormat

UID = "smartby-traffic"
VEHICLES_PER_HOUR = "suffix: veh/h"
VEHICLES_PER_DAY = "suffix: veh/day"


def _hourly(title: str, description: str, value: str, unit_id: str) -> timeseries.Panel:
    query = f"""
        SELECT $__timeGroupAlias(t.hour, $__interval),
               coalesce(s.name, t.device_id) AS metric,
               {value} AS value
        FROM traffic_hourly t
        LEFT JOIN sites s ON s.id = t.site_id
        WHERE $__timeFilter(t.hour)
          AND t.site_id IN ($site)
        GROUP BY 1, 2
        ORDER BY 1, 2
    """
    return (
        graph(title, description, unit_id, span=12, height=9)
        .interval("1h")
        .with_target(sql_target(query, SERIES_COLUMNS))
        .line_width(1)
        .fill_opacity(0)
        .legend(legend_table("mean", "max"))
        .tooltip(tooltip_all_series())
    )


def volume() -> timeseries.Panel:
    return _hourly(
        "Traffic volume per counter",
        "Vehicles per hour, both directions (the mean of the hours in each interval when "
        "the range is long).",
        "avg(t.volume)",
        VEHICLES_PER_HOUR,
    ).decimals(0)


def mean_speed() -> timeseries.Panel:
    return _hourly(
        "Mean speed per counter",
        "Mean speed of the vehicles counted, weighted by vehicles, km/h.",
        "sum(t.mean_speed_kmh * t.volume)"
        " / nullif(sum(t.volume) FILTER (WHERE t.mean_speed_kmh IS NOT NULL), 0)",
        "velocitykmh",
    ).decimals(0)


def heavy_share() -> timeseries.Panel:
    return (
        _hourly(
            "Heavy-vehicle share per counter",
            "Share of vehicles longer than 5.6 m, by vehicles.",
            "sum(t.heavy_volume)"
            " / nullif(sum(t.volume) FILTER (WHERE t.heavy_volume IS NOT NULL), 0)",
            "percentunit",
        )
        .decimals(1)
        .max(1)
    )


def daily_volume() -> timeseries.Panel:
    query = """
        SELECT t.day_start AS "time",
               coalesce(s.name, t.device_id) AS metric,
               t.volume AS value
        FROM traffic_daily t
        LEFT JOIN sites s ON s.id = t.site_id
        WHERE $__timeFilter(t.day_start)
          AND t.site_id IN ($site)
        ORDER BY 1, 2
    """
    return (
        day_bars(
            "Vehicles per day per counter",
            "Vehicles per local day. A day the counter did not report in full shows less "
            "traffic than there was; the ADT table counts only fully reported days.",
            VEHICLES_PER_DAY,
            query,
            span=12,
            height=9,
        )
        .fill_opacity(70)
        .legend(legend_table("mean"))
    )


def average_daily_traffic() -> table.Panel:
    query = """
        SELECT coalesce(s.name, d.id) AS "Counter",
               a.vehicles_per_day AS "ADT",
               a.heavy_share AS "Heavy share",
               coalesce(a.full_days, 0) AS "Full days",
               a.first_day AS "First day",
               a.last_day AS "Last day"
        FROM devices d
        LEFT JOIN traffic_adt a ON a.device_id = d.id
        LEFT JOIN sites s ON s.id = d.site_id
        WHERE d.kind = 'traffic'
          AND d.site_id IN ($site)
        ORDER BY 2 DESC NULLS LAST, 1
    """
    columns = ["Counter", "ADT", "Heavy share", "Full days", "First day", "Last day"]
    return (
        table.Panel()
        .show_header(True)
        .title("Average daily traffic (ADT)")
        .description(
            "Mean vehicles per day over the fully reported days of the last 365 days (not "
            "the time range): with a full year of data this is the annual average daily "
            "traffic (ÅDT) that road planning uses. Empty: no fully reported day yet."
        )
        .span(12)
        .height(9)
        .with_target(sql_target(query, columns, SqlFormat.TABLE))
        .override_by_name(
            "ADT",
            [
                display("ADT (vehicles/day)"),
                unit("none"),
                decimals(0),
                cell("gauge"),
                dbm.DynamicConfigValue(id_val="min", value=0),
                dbm.DynamicConfigValue(id_val="color", value={"mode": "continuous-BlPu"}),
            ],
        )
        .override_by_name("Heavy share", [unit("percentunit"), decimals(1)])
        .override_by_name("Full days", [unit("none")])
        .thresholds(thresholds("green"))
    )


def build(timezone: str) -> dbm.Dashboard:
    return (
        base_dashboard(
            UID,
            "Traffic",
            "Volume, mean speed and heavy-vehicle share per counter, and average daily traffic.",
            ["traffic"],
            timezone,
            time_from="now-7d",
        )
        .with_variable(site_variable("traffic", "Counter"))
        .with_panel(volume())
        .with_panel(mean_speed())
        .with_panel(heavy_share())
        .with_panel(daily_volume())
        .with_panel(average_daily_traffic())
        .build()
    )
