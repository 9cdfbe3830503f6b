"""Energy in municipal buildings: consumption per building by day and hour, the heating
season against the weather, and CO2e; for the climate office and building managers.

Heating degree days (graddagstall) use the Norwegian base of 17 °C (Enova's degree-day
figures and NS 3031): a day with mean temperature T below 17 °C counts 17 − T.  The
outdoor temperature is the mean of the air-quality stations' temperature sensors, from
the daily (local-day) rollups, so the dashboards need no weather service.

The heating season is taken as 1 September to 31 May; "this season" runs from the
1 September before the end of the time range to that end (or to 31 May, when the range
ends in summer), "last season" over the same days a year earlier, and both are normalised
by their degree days (kWh per degree day), so a cold and a mild winter compare fairly.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dbm

from dashboards.common import (
    SERIES_COLUMNS,
    base_dashboard,
    day_bars,
    decimals,
    display,
    fixed_colour,
    graph,
    legend_table,
    site_variable,
    sql_target,
    stacked,
    thresholds,
    tooltip_all_series,
    unit,
)
from dashboards.sql import SqlFormat

UID = "smartby-energy"

#: base temperature of Norwegian heating degree days, °C
HDD_BASE_C = 17.0
#: first month of the heating season (September), and its length: to 31 May
HEATING_SEASON_START_MONTH = 9
HEATING_SEASON_MONTHS = 9
HDD_UNIT = "suffix: °C·d"
KWH_PER_HDD_UNIT = "suffix: kWh/°C·d"


def _legend() -> cb.VizLegendOptions:
    """Buildings by their total in the time range, largest first."""
    return legend_table("sum", "mean").sort_by("Total").sort_desc(True)


def _daily_temperature(where: str) -> str:
    """Daily mean outdoor temperature, °C, over the air-quality stations."""
    return f"""
            SELECT r.bucket AS day_start, sum(r.sum) / sum(r.count) AS mean_c
            FROM rollups r
            JOIN series se ON se.id = r.series_id
            JOIN devices d ON d.id = se.device_id
            WHERE r.resolution = '1d'
              AND se.metric = 'temperature'
              AND d.kind = 'air_quality'
              AND {where}
            GROUP BY 1"""


def daily_per_building() -> timeseries.Panel:
    query = """
        SELECT e.day_start AS "time", s.name AS metric, e.kwh AS value
        FROM energy_daily e
        JOIN sites s ON s.id = e.site_id
        WHERE $__timeFilter(e.day_start)
          AND e.site_id IN ($site)
        ORDER BY 1, 2
    """
    return (
        day_bars(
            "Consumption per building per day",
            "Electricity per building and local day, kWh, from the meters' registers "
            "(reset-aware) or integrated power. Stacked: the top is the total.",
            "kwatth",
            query,
            span=24,
            height=10,
        )
        .fill_opacity(80)
        .line_width(1)
        .stacking(stacked())
        .legend(_legend())
        .tooltip(tooltip_all_series())
    )


def hourly_per_building() -> timeseries.Panel:
    query = """
        SELECT $__timeGroupAlias(e.hour, $__interval),
               s.name AS metric,
               avg(e.kwh) AS value
        FROM energy_hourly e
        JOIN sites s ON s.id = e.site_id
        WHERE $__timeFilter(e.hour)
          AND e.site_id IN ($site)
        GROUP BY 1, 2
        ORDER BY 1, 2
    """
    return (
        graph(
            "Consumption per building per hour",
            "kWh per hour per building (the mean of the hours in each interval when the "
            "range is long), i.e. the mean load in kW: night and weekend base load show here.",
            "kwatth",
            span=24,
            height=10,
        )
        .interval("1h")
        .with_target(sql_target(query, SERIES_COLUMNS))
        .decimals(1)
        .line_width(1)
        .fill_opacity(0)
        .legend(_legend())
        .tooltip(tooltip_all_series())
    )


def consumption_and_degree_days() -> timeseries.Panel:
    temperature = _daily_temperature("$__timeFilter(r.bucket)")
    query = f"""
        WITH energy AS (
            SELECT day_start, sum(kwh) AS kwh
            FROM energy_daily
            WHERE $__timeFilter(day_start)
              AND site_id IN ($site)
            GROUP BY 1
        ),
        temperature AS ({temperature}
        )
        SELECT e.day_start AS "time",
               e.kwh AS "Consumption",
               greatest({HDD_BASE_C} - t.mean_c, 0) AS "Heating degree days"
        FROM energy e
        LEFT JOIN temperature t USING (day_start)
        ORDER BY 1
    """
    return (
        day_bars(
            "Daily consumption and heating degree days",
            "Total kWh per day of the selected buildings (bars, left axis) against heating "
            f"degree days (line, right axis; base {HDD_BASE_C:g} °C, outdoor temperature from "
            "the air-quality stations). Consumption that follows the line is heating.",
            "kwatth",
            query,
            ["time", "Consumption", "Heating degree days"],
            span=12,
            height=10,
        )
        .fill_opacity(60)
        .override_by_name(
            "Heating degree days",
            [
                unit(HDD_UNIT),
                decimals(1),
                dbm.DynamicConfigValue(id_val="custom.drawStyle", value="line"),
                dbm.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
                dbm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
                dbm.DynamicConfigValue(id_val="custom.lineWidth", value=2),
                fixed_colour("blue"),
            ],
        )
    )


def heating_seasons(timezone: str) -> table.Panel:
    temperature = _daily_temperature(
        f"r.bucket >= (SELECT min(start_day) FROM seasons)::timestamp AT TIME ZONE '{timezone}'"
    )
    month = HEATING_SEASON_START_MONTH
    query = f"""
        WITH local_end AS (
            SELECT ($__timeTo()::timestamptz AT TIME ZONE '{timezone}')::date AS day
        ),
        season_start AS (
            SELECT make_date(extract(year FROM day)::int
                             - (extract(month FROM day) < {month})::int, {month}, 1) AS day,
                   day AS range_end
            FROM local_end
        ),
        this_season AS (
            SELECT day AS start_day,
                   least(range_end, (day + interval '{HEATING_SEASON_MONTHS} months')::date - 1)
                       AS end_day
            FROM season_start
        ),
        seasons AS (
            SELECT 'This season' AS label, start_day, end_day FROM this_season
            UNION ALL
            SELECT 'Last season', (start_day - interval '1 year')::date,
                   (end_day - interval '1 year')::date
            FROM this_season
        ),
        temperature AS ({temperature}
        ),
        degree_days AS (
            SELECT se.label,
                   sum(greatest({HDD_BASE_C} - t.mean_c, 0)) AS hdd
            FROM seasons se
            JOIN temperature t
              ON (t.day_start AT TIME ZONE '{timezone}')::date >= se.start_day
             AND (t.day_start AT TIME ZONE '{timezone}')::date <= se.end_day
            GROUP BY se.label
        ),
        energy AS (
            SELECT se.label, sum(e.kwh) AS kwh, count(DISTINCT e.day) AS days
            FROM seasons se
            JOIN energy_daily e ON e.day >= se.start_day AND e.day <= se.end_day
            WHERE e.site_id IN ($site)
            GROUP BY se.label
        )
        SELECT se.label AS "Season",
               se.start_day AS "From",
               se.end_day AS "To",
               coalesce(e.days, 0) AS "Days with data",
               e.kwh AS "Consumption",
               dd.hdd AS "Heating degree days",
               e.kwh / nullif(dd.hdd, 0) AS "kWh per degree day"
        FROM seasons se
        LEFT JOIN energy e USING (label)
        LEFT JOIN degree_days dd USING (label)
        ORDER BY se.start_day DESC
    """
    columns = [
        "Season",
        "From",
        "To",
        "Days with data",
        "Consumption",
        "Heating degree days",
        "kWh per degree day",
    ]
    return (
        table.Panel()
        .show_header(True)
        .title("Heating season: this season against the same days last season")
        .description(
            "From 1 September to the end of the time range (at most to 31 May), and the "
            "same days a year earlier. kWh per degree day takes the weather out: lower is "
            "better. Compare only seasons with the same buildings and days with data."
        )
        .span(12)
        .height(10)
        .with_target(sql_target(query, columns, SqlFormat.TABLE))
        .override_by_name("Consumption", [unit("kwatth"), decimals(0)])
        .override_by_name("Heating degree days", [unit(HDD_UNIT), decimals(0)])
        .override_by_name("kWh per degree day", [unit(KWH_PER_HDD_UNIT), decimals(1)])
        .override_by_name("Days with data", [unit("none")])
    )


def energy_signature() -> table.Panel:
    temperature = _daily_temperature("$__timeFilter(r.bucket)")
    query = f"""
        WITH temperature AS ({temperature}
        )
        SELECT s.name AS "Building",
               regr_intercept(e.kwh, greatest({HDD_BASE_C} - t.mean_c, 0)) AS "Base load",
               regr_slope(e.kwh, greatest({HDD_BASE_C} - t.mean_c, 0)) AS "Heating",
               regr_r2(e.kwh, greatest({HDD_BASE_C} - t.mean_c, 0)) AS "R²",
               count(*) AS "Days"
        FROM energy_daily e
        JOIN temperature t USING (day_start)
        JOIN sites s ON s.id = e.site_id
        WHERE $__timeFilter(e.day_start)
          AND e.site_id IN ($site)
        GROUP BY s.name
        ORDER BY 3 DESC NULLS LAST, 1
    """
    return (
        table.Panel()
        .show_header(True)
        .title("Energy signature per building")
        .description(
            "A straight line through each building's daily kWh against heating degree days "
            "in the time range: the base load (kWh a day with no heating need) and the "
            "heating sensitivity (kWh per degree day). R² near 1: consumption follows the "
            "weather. Needs a few weeks of varied weather to be meaningful."
        )
        .span(12)
        .height(10)
        .with_target(
            sql_target(query, ["Building", "Base load", "Heating", "R²", "Days"], SqlFormat.TABLE)
        )
        .override_by_name(
            "Base load", [display("Base load (kWh/day)"), unit("kwatth"), decimals(0)]
        )
        .override_by_name(
            "Heating",
            [display("Heating (kWh per degree day)"), unit(KWH_PER_HDD_UNIT), decimals(1)],
        )
        .override_by_name("R²", [unit("none"), decimals(2)])
        .override_by_name("Days", [unit("none")])
    )


def totals() -> list[stat.Panel]:
    query = """
        SELECT sum(kwh) AS "Consumption",
               sum(co2e_kg) AS "CO2e",
               max(grid_factor_g_per_kwh) AS "Grid factor"
        FROM energy_daily
        WHERE $__timeFilter(day_start)
          AND site_id IN ($site)
    """
    columns = ["Consumption", "CO2e", "Grid factor"]
    panels = []
    for column, title, unit_id, places, description in (
        ("Consumption", "Consumption in the period", "kwatth", 0, "kWh of the selected buildings."),
        ("CO2e", "CO2e in the period", "masskg", 0, "Greenhouse gas from that electricity."),
        (
            "Grid factor",
            "Grid emission factor used",
            "suffix: g CO2e/kWh",
            0,
            "The factor the CO2e was computed with (SMARTBY_GRID_FACTOR_G_PER_KWH).",
        ),
    ):
        panels.append(
            stat.Panel()
            .title(title)
            .description(description)
            .span(4)
            .height(5)
            .with_target(sql_target(query, columns, SqlFormat.TABLE))
            .reduce_options(
                cb.ReduceDataOptions().values(False).calcs(["lastNotNull"]).fields(f"/^{column}$/")
            )
            .unit(unit_id)
            .decimals(places)
            .color_mode(cm.BigValueColorMode.NONE)
            .graph_mode(cm.BigValueGraphMode.NONE)
        )
    return panels


def co2e_per_building() -> bargauge.Panel:
    query = """
        SELECT s.name AS "Building", sum(e.co2e_kg) AS "CO2e"
        FROM energy_daily e
        JOIN sites s ON s.id = e.site_id
        WHERE $__timeFilter(e.day_start)
          AND e.site_id IN ($site)
        GROUP BY s.name
        ORDER BY 2 DESC
    """
    return (
        bargauge.Panel()
        .title("CO2e per building in the period")
        .description("kg CO2e of each building's electricity in the time range.")
        .span(12)
        .height(5)
        .with_target(sql_target(query, ["Building", "CO2e"], SqlFormat.TABLE))
        .reduce_options(cb.ReduceDataOptions().values(True).calcs([]).fields("/^CO2e$/"))
        .unit("masskg")
        .decimals(0)
        .min(0)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .thresholds(thresholds("green"))
    )


def build(timezone: str) -> dbm.Dashboard:
    dashboard = base_dashboard(
        UID,
        "Energy in municipal buildings",
        "Electricity per building by day and hour, the heating season against the "
        "weather, and CO2e.",
        ["energy"],
        timezone,
        time_from="now-30d",
    ).with_variable(site_variable("energy", "Building"))
    for panel in totals():
        dashboard.with_panel(panel)
    return (
        dashboard.with_panel(co2e_per_building())
        .with_panel(daily_per_building())
        .with_panel(hourly_per_building())
        .with_panel(consumption_and_degree_days())
        .with_panel(heating_seasons(timezone))
        .with_panel(energy_signature())
        .build()
    )
