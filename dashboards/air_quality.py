"""Air quality: the European Air Quality Index per station, pollutant series, legal limits
and data coverage; for the climate office, the public and operations staff.

Numbers used, with their sources
--------------------------------
European Air Quality Index (EEA, 2024 revision), hourly means, lower bounds of
Fair / Moderate / Poor / Very poor / Extremely poor, in µg/m³ (as in core/indicators):
PM2.5 5/15/50/90/140, PM10 15/45/120/195/270, NO2 10/25/60/100/150, O3 60/100/120/160/180.
Colours are the EEA's own index colours.

Legal limits: Norway's forurensningsforskriften (FOR-2004-06-01-931) chapter 7, § 7-6
limit values, as in force since 2016 (they implement Directive 2008/50/EC, with
stricter particle limits):
- PM10, daily mean 50 µg/m³, not to be exceeded more than 30 times a calendar year
  (the Directive allows 35; we use Norway's 30); annual mean 25 µg/m³;
- PM2.5, annual mean 15 µg/m³ (the Directive's is 25);
- NO2, hourly mean 200 µg/m³, not more than 18 times a calendar year; annual mean 40.
A daily mean counts only with at least 18 hourly means (75 %, the Directive's Annex XI
aggregation rule).  Year-to-date means are shown against the annual limits: they are
indicators, not the formal annual assessment.

Data capture: the Directive's Annex I data quality objective for fixed measurements is
at least 90 % of the hours; the coverage table colours below that.
"""

from __future__ import annotations

from typing import TypeVar

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dbm
from grafana_foundation_sdk.models import geomap as gm

from core.indicators import AQI_BANDS, AQI_LEVEL_NAMES
from dashboards.common import (
    SERIES_COLUMNS,
    base_dashboard,
    cell,
    column_thresholds,
    dashed_threshold_lines,
    decimals,
    display,
    graph,
    legend_table,
    site_variable,
    sql_target,
    thresholds,
    tooltip_all_series,
    unit,
    value_texts,
)
from dashboards.sql import SqlFormat

UID = "smartby-air-quality"

#: the EEA's colours of index levels 1 (Good) to 6 (Extremely poor)
AQI_COLOURS = ("#50F0E6", "#50CCAA", "#F0E641", "#FF5050", "#960032", "#7D2181")
#: EEA European Air Quality Index levels: level -> (name, colour)
AQI_LEVELS: dict[int, tuple[str, str]] = {
    level: (name, colour)
    for level, (name, colour) in enumerate(zip(AQI_LEVEL_NAMES, AQI_COLOURS, strict=True), 1)
}

POLLUTANT_NAMES = {"pm25": "PM2.5", "pm10": "PM10", "no2": "NO2", "o3": "O3"}

# forurensningsforskriften § 7-6 (see the module docstring)
PM10_DAILY_LIMIT = 50.0
PM10_DAILY_ALLOWED = 30
PM10_ANNUAL_LIMIT = 25.0
PM25_ANNUAL_LIMIT = 15.0
NO2_HOURLY_LIMIT = 200.0
NO2_HOURLY_ALLOWED = 18
NO2_ANNUAL_LIMIT = 40.0
#: hourly means needed for a valid daily mean (75 % of 24)
VALID_DAY_HOURS = 18
#: Directive 2008/50/EC Annex I: minimum data capture
MIN_DATA_CAPTURE = 0.9

#: the exceedance counts' column names
PM10_DAYS = f"PM10 days > {PM10_DAILY_LIMIT:g}"
NO2_HOURS = f"NO2 hours > {NO2_HOURLY_LIMIT:g}"

_LevelPanel = TypeVar("_LevelPanel", geomap.Panel, statetimeline.Panel)


def _coloured_by_level(panel: _LevelPanel) -> _LevelPanel:
    """Index levels 1 to 6 shown with the EEA's names and colours."""
    return (
        panel.mappings(value_texts(AQI_LEVELS))
        .thresholds(
            thresholds(
                AQI_COLOURS[0],
                *((float(level), colour) for level, colour in enumerate(AQI_COLOURS[1:], 2)),
            )
        )
        .color_scheme(db.FieldColor().mode(dbm.FieldColorModeId.THRESHOLDS))
        .min(1)
        .max(6)
    )


def station_map() -> geomap.Panel:
    """Stations on a map, coloured by the index level of their latest hour."""
    query = """
        SELECT s.name AS station,
               s.lat AS latitude,
               s.lon AS longitude,
               cur.level AS aqi_level,
               cur.dominant AS dominant,
               cur.hour AS hour
        FROM sites s
        LEFT JOIN LATERAL (
            SELECT a.level, a.dominant, a.hour
            FROM aqi_hourly a
            WHERE a.site_id = s.id
              AND a.hour <= $__timeTo()
              AND a.hour > $__timeTo()::timestamptz - interval '3 hours'
            ORDER BY a.hour DESC
            LIMIT 1
        ) cur ON true
        WHERE s.id IN ($site)
        ORDER BY s.name
    """
    markers = (
        cb.MapLayerOptions()
        .type("markers")
        .name("Stations")
        .tooltip(True)
        .location(
            cb.FrameGeometrySource()
            .mode(cm.FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": "aqi_level", "fixed": "#808080"},
                    "opacity": 0.9,
                    "size": {"fixed": 12, "max": 15, "min": 4},
                    "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                    "text": {"field": "station", "fixed": "", "mode": "field"},
                    "textConfig": {
                        "fontSize": 11,
                        "offsetX": 0,
                        "offsetY": -14,
                        "textAlign": "center",
                        "textBaseline": "bottom",
                    },
                },
            }
        )
    )
    return _coloured_by_level(
        geomap.Panel()
        .title("Current air quality index by station")
        .description(
            "European Air Quality Index (EEA) of each station's latest hour, at most three "
            "hours before the end of the time range; grey when a station has no recent index. "
            "The level is that of the worst pollutant."
        )
        .span(12)
        .height(13)
        .with_target(
            sql_target(
                query,
                ["station", "latitude", "longitude", "aqi_level", "dominant", "hour"],
                SqlFormat.TABLE,
            )
        )
        .view(geomap.MapViewConfig().id("fit").zoom(11).max_zoom(14))
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .layers([markers])
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
    )


def aqi_history() -> statetimeline.Panel:
    query = """
        SELECT $__timeGroupAlias(a.hour, $__interval),
               s.name AS metric,
               max(a.level) AS value
        FROM aqi_hourly a
        JOIN sites s ON s.id = a.site_id
        WHERE $__timeFilter(a.hour)
          AND a.site_id IN ($site)
        GROUP BY 1, 2
        ORDER BY 1, 2
    """
    return _coloured_by_level(
        statetimeline.Panel()
        .title("Air quality index per station over time")
        .description(
            "The worst hourly index level of each station in each interval (EEA European "
            "Air Quality Index, 2024 bands)."
        )
        .span(12)
        .height(13)
        .interval("1h")
        .with_target(sql_target(query, SERIES_COLUMNS))
        .show_value(cm.VisibilityMode.NEVER)
        .row_height(0.8)
    )


def pollutant_series(metric: str) -> timeseries.Panel:
    """Hourly means per station from the 1-hour rollups (FAIL readings are not in them)."""
    name = POLLUTANT_NAMES[metric]
    bands = AQI_BANDS[metric]
    query = f"""
        SELECT $__timeGroupAlias(r.bucket, $__interval),
               s.name AS metric,
               sum(r.sum) / sum(r.count) AS value
        FROM rollups r
        JOIN series se ON se.id = r.series_id
        JOIN devices d ON d.id = se.device_id
        JOIN sites s ON s.id = d.site_id
        WHERE r.resolution = '1h'
          AND se.metric = '{metric}'
          AND d.site_id IN ($site)
          AND $__timeFilter(r.bucket)
        GROUP BY 1, 2
        ORDER BY 1, 2
    """
    return (
        graph(
            f"{name} by station",
            f"Mean {name} concentration per station, from hourly means of the readings that "
            "passed quality control. Dashed lines: the EEA index bands (Fair, Moderate, Poor, "
            "Very poor, Extremely poor).",
            "conμgm3",
            span=12,
            height=9,
        )
        .interval("1h")
        .with_target(sql_target(query, SERIES_COLUMNS))
        .decimals(1)
        .thresholds(thresholds(AQI_COLOURS[0], *zip(bands, AQI_COLOURS[1:], strict=True)))
        .thresholds_style(dashed_threshold_lines())
        .line_width(1)
        .fill_opacity(0)
        .span_nulls(False)
        .legend(legend_table("mean", "max"))
        .tooltip(tooltip_all_series())
    )


def exceedances(timezone: str) -> table.Panel:
    query = f"""
        WITH hourly AS (
            SELECT d.site_id, se.metric, r.bucket, sum(r.sum) / sum(r.count) AS mean
            FROM rollups r
            JOIN series se ON se.id = r.series_id
            JOIN devices d ON d.id = se.device_id
            WHERE r.resolution = '1h'
              AND se.metric IN ('pm10', 'pm25', 'no2')
              AND d.site_id IN ($site)
              AND r.bucket >= date_trunc('year', $__timeTo()::timestamptz, '{timezone}')
              AND r.bucket < $__timeTo()
            GROUP BY 1, 2, 3
        ),
        daily AS (
            SELECT site_id, metric, date_trunc('day', bucket, '{timezone}') AS day,
                   avg(mean) AS mean, count(*) AS hours
            FROM hourly
            GROUP BY 1, 2, 3
        ),
        per_hour AS (
            SELECT site_id,
                   count(*) FILTER (WHERE metric = 'no2' AND mean > {NO2_HOURLY_LIMIT})
                       AS no2_hours,
                   bool_or(metric = 'no2') AS has_no2,
                   avg(mean) FILTER (WHERE metric = 'pm10') AS pm10_mean,
                   avg(mean) FILTER (WHERE metric = 'pm25') AS pm25_mean,
                   avg(mean) FILTER (WHERE metric = 'no2') AS no2_mean
            FROM hourly
            GROUP BY site_id
        ),
        per_day AS (
            SELECT site_id,
                   count(*) FILTER (WHERE metric = 'pm10' AND hours >= {VALID_DAY_HOURS}
                                    AND mean > {PM10_DAILY_LIMIT}) AS pm10_days,
                   bool_or(metric = 'pm10') AS has_pm10
            FROM daily
            GROUP BY site_id
        )
        SELECT s.name AS "Station",
               CASE WHEN pd.has_pm10 THEN pd.pm10_days END AS "{PM10_DAYS}",
               CASE WHEN ph.has_no2 THEN ph.no2_hours END AS "{NO2_HOURS}",
               ph.pm10_mean AS "PM10 mean",
               ph.pm25_mean AS "PM2.5 mean",
               ph.no2_mean AS "NO2 mean"
        FROM sites s
        LEFT JOIN per_hour ph ON ph.site_id = s.id
        LEFT JOIN per_day pd ON pd.site_id = s.id
        WHERE s.id IN ($site)
        ORDER BY s.name
    """
    columns = ["Station", PM10_DAYS, NO2_HOURS, "PM10 mean", "PM2.5 mean", "NO2 mean"]
    red_from = {
        PM10_DAYS: PM10_DAILY_ALLOWED + 1,
        NO2_HOURS: NO2_HOURLY_ALLOWED + 1,
        "PM10 mean": PM10_ANNUAL_LIMIT,
        "PM2.5 mean": PM25_ANNUAL_LIMIT,
        "NO2 mean": NO2_ANNUAL_LIMIT,
    }
    panel = (
        table.Panel()
        .show_header(True)
        .title("Legal limits this year (forurensningsforskriften § 7-6)")
        .description(
            "From 1 January of the year the time range ends in, to its end. PM10: days with a "
            f"daily mean above {PM10_DAILY_LIMIT:g} µg/m³ ({PM10_DAILY_ALLOWED} allowed a year; "
            f"a day counts with at least {VALID_DAY_HOURS} hourly means). NO2: hours above "
            f"{NO2_HOURLY_LIMIT:g} µg/m³ ({NO2_HOURLY_ALLOWED} allowed). Means so far this year "
            f"against the annual limits: PM10 {PM10_ANNUAL_LIMIT:g}, PM2.5 {PM25_ANNUAL_LIMIT:g}, "
            f"NO2 {NO2_ANNUAL_LIMIT:g} µg/m³. Red: over the limit; empty: not measured."
        )
        .span(24)
        .height(9)
        .with_target(sql_target(query, columns, SqlFormat.TABLE))
    )
    allowed = {
        PM10_DAYS: f"{PM10_DAYS} µg/m³ ({PM10_DAILY_ALLOWED} allowed)",
        NO2_HOURS: f"{NO2_HOURS} µg/m³ ({NO2_HOURLY_ALLOWED} allowed)",
    }
    for column, red in red_from.items():
        if column in allowed:  # a count of exceedances: orange when close to the allowance
            properties = [display(allowed[column]), unit("none"), decimals(0)]
            orange = red - 5
        else:  # a mean so far this year against an annual limit
            properties = [unit("conμgm3"), decimals(1)]
            orange = red * 0.8
        panel.override_by_name(
            column,
            [
                *properties,
                cell("color-background"),
                column_thresholds("green", (orange, "orange"), (red, "red")),
            ],
        )
    return panel


def coverage() -> table.Panel:
    # a pollutant's share of the hours, or NULL where the station does not measure it
    shares = ",\n".join(
        f'''\
               CASE WHEN bool_or(se.metric = '{metric}') THEN least(1.0,
                   count(DISTINCT r.bucket) FILTER (WHERE se.metric = '{metric}') / h.hours) END
                   AS "{name}"'''
        for metric, name in POLLUTANT_NAMES.items()
    )
    pollutants = ", ".join(f"'{metric}'" for metric in POLLUTANT_NAMES)
    query = f"""
        SELECT s.name AS "Station",
{shares},
               sum(r.good_count)::float8 / nullif(sum(r.count), 0) AS "Not suspect"
        FROM sites s
        CROSS JOIN (
            SELECT greatest(1.0, extract(epoch FROM $__timeTo()::timestamptz
                                                    - $__timeFrom()::timestamptz) / 3600) AS hours
        ) h
        JOIN devices d ON d.site_id = s.id AND d.kind = 'air_quality'
        JOIN series se ON se.device_id = d.id AND se.metric IN ({pollutants})
        LEFT JOIN rollups r ON r.series_id = se.id AND r.resolution = '1h'
                           AND $__timeFilter(r.bucket)
        WHERE s.id IN ($site)
        GROUP BY s.name, h.hours
        ORDER BY s.name
    """
    columns = ["Station", *POLLUTANT_NAMES.values(), "Not suspect"]
    panel = (
        table.Panel()
        .show_header(True)
        .title("Data coverage per station")
        .description(
            "Share of the hours in the time range with an hourly mean, per pollutant (empty: "
            f"not measured); the EU objective is at least {MIN_DATA_CAPTURE:.0%}. 'Not "
            "suspect': share of the usable readings that quality control did not flag."
        )
        .span(24)
        .height(9)
        .with_target(sql_target(query, columns, SqlFormat.TABLE))
        .unit("percentunit")
        .decimals(1)
        .min(0)
        .max(1)
        .thresholds(thresholds("red", (0.75, "orange"), (MIN_DATA_CAPTURE, "green")))
    )
    for column in columns[1:]:
        panel.override_by_name(column, [cell("gauge")])
    return panel


def build(timezone: str) -> dbm.Dashboard:
    dashboard = (
        base_dashboard(
            UID,
            "Air quality",
            "European Air Quality Index by station, PM2.5, PM10, NO2 and O3, legal limits "
            "and data coverage.",
            ["air-quality"],
            timezone,
            time_from="now-7d",
        )
        .with_variable(site_variable("air_quality", "Station"))
        .with_panel(station_map())
        .with_panel(aqi_history())
    )
    for metric in POLLUTANT_NAMES:
        dashboard.with_panel(pollutant_series(metric))
    return dashboard.with_panel(exceedances(timezone)).with_panel(coverage()).build()
