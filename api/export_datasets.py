"""What each bulk export holds: its columns, and the query that streams its rows.

Query builders are plain functions returning ``(sql, params)`` so they are tested
without a database; identifiers are composed with `psycopg.sql`, values are always
parameters.  The columns of every dataset are those of the matching JSON route, in
the same order, plus what makes a file readable alone (issue 16): a readings row's
series, site, device, metric and unit, the QC flag's name, and the AQI's means named
with their unit (`api.export_shape` shapes the rows; numbers are rounded to the
metric's resolution there).

A query built with ``geo=True`` adds the site's lon and lat after the columns, for
the GeoJSON encoder to turn into a Point geometry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, LiteralString

from psycopg import sql

from api import queries
from api.export_formats import FORMATS, Column
from api.params import Bucket
from core.indicators import AQI_LEVEL_NAMES

#: the pollutants of the AQI table, in its column order
AQI_POLLUTANTS = ("pm25", "pm10", "no2", "o3", "so2")


def _c(
    name: str,
    kind: Any,
    description: str = "",
    unit: str | None = None,
    rounding: str | float | None = None,
) -> Column:
    return Column(name, kind, description, unit, rounding)


#: rounding of shares and coverages (a fraction of one)
SHARE = 0.001


@dataclass(frozen=True, slots=True)
class Dataset:
    """One exportable dataset.  ``time_column`` is the instant ``from``/``to`` filter
    on (None: the dataset is not a time series and takes no range); ``site_column``
    and ``device_column`` are what ``site``/``device`` filter on."""

    key: str
    columns: tuple[Column, ...]
    source: LiteralString  # FROM clause, aliased ``t`` for the main table
    select: LiteralString  # the columns, in order
    order: LiteralString
    time_column: LiteralString | None = None
    site_column: LiteralString | None = None
    device_column: LiteralString | None = None
    geometry: LiteralString | None = "st.lon, st.lat"  # None: no GeoJSON
    site_join: LiteralString = ""
    select_params: tuple[Any, ...] = ()  # values of placeholders in ``select``
    default_span: timedelta = timedelta(days=7)  # as the JSON route's

    @property
    def formats(self) -> list[str]:
        """The formats it exports to (GeoJSON needs a position)."""
        return [f for f in FORMATS if f != "geojson" or self.geometry is not None]

    @property
    def key_positions(self) -> tuple[int, ...]:
        """Where in a row the ``order`` columns are: together they are unique (each
        table's key), so the last row of a page says where the next one starts."""
        names = [c.name for c in self.columns]
        return tuple(names.index(part.strip().removeprefix("t.")) for part in self.order.split(","))


SITE_COLUMNS = (
    _c("id", "text"),
    _c("name", "text"),
    _c("kind", "text", "roadside, urban_background, building or road_section"),
    _c("municipality", "text"),
    _c("lon", "float", "WGS 84 degrees east"),
    _c("lat", "float", "WGS 84 degrees north"),
    _c("devices", "list", "ids of the devices at the site"),
    _c("attributes", "json", "free-form facts about the site"),
)
DEVICE_COLUMNS = (
    _c("id", "text"),
    _c("site_id", "text"),
    _c("kind", "text", "air_quality, energy or traffic"),
    _c("vendor", "text"),
    _c("model", "text"),
    _c("status", "text"),
    _c("online", "bool", "what the device last said on its status topic"),
    _c("battery", "float"),
    _c("rssi", "float"),
    _c("last_seen", "timestamp"),
    _c("created_at", "timestamp"),
    _c("updated_at", "timestamp"),
    _c("metrics", "list", "keys of the metrics the device measures"),
)
METRIC_COLUMNS = (
    _c("key", "text"),
    _c("name", "text"),
    _c("domain", "text"),
    _c("unit", "text", "canonical unit, SenML spelling (RFC 8428)"),
    _c("unit_symbol", "text"),
    _c("definition_uri", "text"),
    _c("min_value", "float"),
    _c("max_value", "float"),
    _c("value_type", "text", "gauge (averaged), count (summed) or cumulative (a register)"),
    _c("molar_mass", "float", "g/mol"),
    _c("resolution", "float", "how finely the metric is resolved: exports round to it"),
    _c("description", "text"),
)
_QUALITY = "QARTOD flag: 1 good, 2 not evaluated, 3 suspect, 4 fail, 9 missing"
_QUALITY_NAME = "the QARTOD flag's name: good, not_evaluated, suspect, fail or missing"
_IN_UNIT = "in the unit of the row's unit column, rounded to the metric's resolution"
#: which columns of a row say what it is: the series, where, what and in which unit
_SERIES_IDS = (
    _c("series_id", "int", "the time series (one device × one metric), as in /v1/series"),
    _c("site_id", "text", "where: the site's id, as in /v1/sites"),
    _c("device_id", "text", "the sensor's id, as in /v1/devices"),
    _c("metric", "text", "what is measured: the metric's key, as in /v1/metrics"),
    _c("unit", "text", "the unit of the values, SenML spelling (RFC 8428)"),
)
LATEST_COLUMNS = (
    _c("series_id", "int"),
    _c("device_id", "text"),
    _c("site_id", "text"),
    _c("kind", "text"),
    _c("metric", "text"),
    _c("unit", "text", "the unit of the value, SenML spelling (RFC 8428)"),
    _c("time", "timestamp", "time of the reading; of an hourly aggregate, its start"),
    _c("value", "float", _IN_UNIT),
    _c("quality", "int", _QUALITY + "; empty for an aggregate"),
    _c("quality_name", "text", _QUALITY_NAME + "; empty for an aggregate"),
    _c("aggregate", "text", "raw, or 1h for traffic (published only in aggregates)"),
)
RAW_COLUMNS = (
    _c("time", "timestamp"),
    *_SERIES_IDS,
    _c("value", "float", _IN_UNIT),
    _c("quality", "int", _QUALITY),
    _c("quality_name", "text", _QUALITY_NAME),
)
BUCKET_COLUMNS = (
    *_SERIES_IDS,
    _c("time", "timestamp", "start of the bucket (days start at local midnight)"),
    _c("end", "timestamp", "end of the bucket, exclusive"),
    _c("count", "int", "usable readings (QC good, not evaluated or suspect)"),
    _c("good_count", "int", "of which good or not evaluated"),
    _c("suspect_count", "int", "of which suspect"),
    _c("sum", "float", _IN_UNIT),
    _c("mean", "float", _IN_UNIT),
    _c("std", "float", "population standard deviation, " + _IN_UNIT),
    _c("min", "float", _IN_UNIT),
    _c("max", "float", _IN_UNIT),
    _c("first", "float", _IN_UNIT),
    _c("last", "float", _IN_UNIT),
    _c(
        "coverage",
        "float",
        "readings / expected readings at the usual reporting interval",
        rounding=SHARE,
    ),
)
#: the columns of bucket rows that hold values of the metric (rounded to its resolution)
BUCKET_VALUE_COLUMNS = frozenset({"sum", "mean", "std", "min", "max", "first", "last"})
_ENERGY = (
    _c("kwh", "float", "electricity used", "kWh", "energy"),
    _c("co2e_kg", "float", "CO2 equivalents of that electricity", "kg", 0.001),
    _c("coverage", "float", "share of the bucket the meter readings covered", rounding=SHARE),
)
_TRAFFIC = (
    _c("volume", "float", "vehicles counted", "vehicles", "vehicle_count"),
    _c("heavy_volume", "float", "vehicles longer than 5.6 m", "vehicles", "heavy_vehicle_count"),
    _c("mean_speed_kmh", "float", "mean speed of the vehicles", "km/h", "speed"),
    _c("heavy_share", "float", "heavy_volume / volume", rounding=SHARE),
    _c("coverage", "float", "share of the bucket the counter reported", rounding=SHARE),
)

_SITE_OF_T: LiteralString = " LEFT JOIN sites st ON st.id = t.site_id"


def _indicator(
    key: str,
    table: queries.IndicatorTable,
    columns: tuple[Column, ...],
    *,
    select: LiteralString | None = None,
    select_params: tuple[Any, ...] = (),
) -> Dataset:
    """The export of an indicator table: the JSON route's table, filters and default
    range, its columns in the route's order (``select``: when the route computes one)."""
    return Dataset(
        key,
        columns,
        source=table.table + " t",
        select=select or ", ".join("t." + name for name in table.columns),
        order="t." + table.key_column + ", t." + table.time_column,
        time_column="t." + table.time_column,
        site_column="t.site_id",
        device_column="t.device_id" if "device_id" in table.filters else None,
        site_join=_SITE_OF_T,
        select_params=select_params,
        default_span=table.default_span,
    )


DATASETS: dict[str, Dataset] = {
    d.key: d
    for d in (
        Dataset(
            "sites",
            SITE_COLUMNS,
            "sites t",
            "t.id, t.name, t.kind, t.municipality, t.lon, t.lat,"
            " ARRAY(SELECT d.id FROM devices d WHERE d.site_id = t.id ORDER BY d.id),"
            " t.properties",
            "t.id",
            site_column="t.id",
            geometry="t.lon, t.lat",
        ),
        Dataset(
            "devices",
            DEVICE_COLUMNS,
            "devices t",
            "t.id, t.site_id, t.kind, t.vendor, t.model, t.status, t.online, t.battery, t.rssi,"
            " t.last_seen, t.created_at, t.updated_at,"
            " ARRAY(SELECT se.metric FROM series se WHERE se.device_id = t.id ORDER BY se.metric)",
            "t.id",
            site_column="t.site_id",
            device_column="t.id",
            site_join=_SITE_OF_T,
        ),
        Dataset(
            "metrics",
            METRIC_COLUMNS,
            "metrics t",
            "t.key, t.name, t.domain, t.unit, t.unit_symbol, t.definition_uri, t.min_value,"
            " t.max_value, t.value_type, t.molar_mass, t.resolution, t.description",
            "t.key",
            geometry=None,
        ),
        Dataset(
            # rows from the JSON route's own query: `latest_query`
            "latest",
            LATEST_COLUMNS,
            "",
            "",
            "",
            site_column="site_id",
            device_column="device_id",
        ),
        _indicator(
            "aqi",
            queries.AQI_HOURLY,
            (
                _c("site_id", "text"),
                _c("hour", "timestamp", "start of the averaging hour"),
                _c("level", "int", "EEA index: 1 good … 6 extremely poor"),
                _c("label", "text", "the level's name"),
                _c("dominant", "text", "the pollutant that set the level"),
                # the JSON route's pm25 ... so2, named with their unit: the file alone
                # says what the numbers are
                *(
                    _c(f"{key}_ug_m3", "float", f"hourly mean of {key}, µg/m³", "ug/m3", key)
                    for key in AQI_POLLUTANTS
                ),
            ),
            # the JSON route labels each level: so does the export, in SQL
            select="t.site_id, t.hour, t.level, (%s::text[])[t.level], t.dominant, t.pm25,"
            " t.pm10, t.no2, t.o3, t.so2",
            select_params=(list(AQI_LEVEL_NAMES),),
        ),
        _indicator(
            "energy-hourly",
            queries.ENERGY_HOURLY,
            (_c("site_id", "text"), _c("hour", "timestamp"), *_ENERGY),
        ),
        _indicator(
            "energy-daily",
            queries.ENERGY_DAILY,
            (
                _c("site_id", "text"),
                _c("day", "date", "local date"),
                _c("day_start", "timestamp", "local midnight"),
                *_ENERGY,
                _c("grid_factor_g_per_kwh", "float", "grid emission factor", "g/kWh"),
            ),
        ),
        _indicator(
            "traffic-hourly",
            queries.TRAFFIC_HOURLY,
            (_c("device_id", "text"), _c("site_id", "text"), _c("hour", "timestamp"), *_TRAFFIC),
        ),
        _indicator(
            "traffic-daily",
            queries.TRAFFIC_DAILY,
            (
                _c("device_id", "text"),
                _c("site_id", "text"),
                _c("day", "date", "local date"),
                _c("day_start", "timestamp", "local midnight"),
                *_TRAFFIC,
            ),
        ),
        Dataset(
            "traffic-adt",
            (
                _c("device_id", "text"),
                _c("site_id", "text"),
                _c(
                    "vehicles_per_day",
                    "float",
                    "mean volume of fully reported days",
                    "vehicles/d",
                    "vehicle_count",
                ),
                _c("full_days", "int"),
                _c("first_day", "date"),
                _c("last_day", "date"),
                _c("heavy_share", "float", "share of vehicles longer than 5.6 m", rounding=SHARE),
            ),
            "traffic_adt t",
            "t.device_id, t.site_id, t.vehicles_per_day, t.full_days, t.first_day,"
            " t.last_day, t.heavy_share",
            "t.device_id",
            site_column="t.site_id",
            device_column="t.device_id",
            site_join=_SITE_OF_T,
        ),
        Dataset(
            # columns depend on the bucket: `readings_columns`
            "readings",
            RAW_COLUMNS,
            "readings t",
            "",
            "",
            time_column="t.time",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters of one export request, already validated."""

    start: datetime | None = None
    end: datetime | None = None
    sites: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    series: tuple[int, ...] = ()
    bucket: Bucket = "raw"


Query = tuple[sql.Composable, Any]  # positional (list) or named (dict) parameters


def _where(conditions: Sequence[sql.Composable]) -> sql.Composable:
    if not conditions:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)


def dataset_query(
    dataset: Dataset,
    filters: Filters,
    *,
    geo: bool = False,
    after: Sequence[Any] | None = None,
    limit: int | None = None,
) -> Query:
    """The SELECT of ``dataset``'s rows (not latest and readings, which have their own
    builders): the page of at most ``limit`` rows after the key ``after`` (the values
    of the ``order`` columns of the previous page's last row), in key order."""
    if dataset.key in ("readings", "latest"):
        raise ValueError(f"{dataset.key} has its own query builder")
    conditions: list[sql.Composable] = []
    params: list[Any] = list(dataset.select_params)
    if dataset.time_column is not None:
        if filters.start is not None:
            conditions.append(sql.SQL(dataset.time_column + " >= %s"))
            params.append(filters.start)
        if filters.end is not None:
            conditions.append(sql.SQL(dataset.time_column + " < %s"))
            params.append(filters.end)
    if filters.sites and dataset.site_column is not None:
        conditions.append(sql.SQL(dataset.site_column + " = ANY(%s)"))
        params.append(list(filters.sites))
    if filters.devices and dataset.device_column is not None:
        conditions.append(sql.SQL(dataset.device_column + " = ANY(%s)"))
        params.append(list(filters.devices))
    if after is not None:
        # a row comparison on the table's key: an index range scan from the last row
        placeholders = ", ".join("%s" for _ in after)
        conditions.append(sql.SQL("(" + dataset.order + ") > (" + placeholders + ")"))
        params.extend(after)
    select = dataset.select
    source = dataset.source
    if geo:
        if dataset.geometry is None:
            raise ValueError(f"{dataset.key} has no geometry")
        select = select + ", " + dataset.geometry
        source = source + dataset.site_join
    query = (
        sql.SQL("SELECT " + select + " FROM " + source)
        + _where(conditions)
        + sql.SQL(" ORDER BY " + dataset.order)
    )
    if limit is not None:
        query += sql.SQL(" LIMIT %s")
        params.append(limit)
    return query, params


def latest_export_query(
    filters: Filters, *, geo: bool = False, after: int | None = None, limit: int | None = None
) -> Query:
    """The latest value of every series, from the JSON route's own query (traffic as
    its latest complete hour), filtered by sites and metrics; the page of at most
    ``limit`` series after the series ``after``."""
    inner, named = queries.latest_query()
    conditions: list[sql.Composable] = []
    if after is not None:
        conditions.append(sql.SQL("q.series_id > %(export_after)s"))
        named["export_after"] = after
    if filters.sites:
        conditions.append(sql.SQL("q.site_id = ANY(%(export_sites)s)"))
        named["export_sites"] = list(filters.sites)
    if filters.devices:
        conditions.append(sql.SQL("q.device_id = ANY(%(export_devices)s)"))
        named["export_devices"] = list(filters.devices)
    if filters.metrics:
        conditions.append(sql.SQL("q.metric = ANY(%(export_metrics)s)"))
        named["export_metrics"] = list(filters.metrics)
    if filters.series:
        conditions.append(sql.SQL("q.series_id = ANY(%(export_series)s)"))
        named["export_series"] = list(filters.series)
    # the route's query's columns: the flag's name is added on the way out
    names = sql.SQL(", ").join(
        sql.Identifier(c.name) for c in LATEST_COLUMNS if c.name != "quality_name"
    )
    geometry = sql.SQL(", st.lon, st.lat") if geo else sql.SQL("")
    join = sql.SQL(" LEFT JOIN sites st ON st.id = q.site_id") if geo else sql.SQL("")
    query = sql.SQL("SELECT q.*{} FROM ({}) q ({}){}{} ORDER BY q.series_id").format(
        geometry, inner, names, join, _where(conditions)
    )
    if limit is not None:
        query += sql.SQL(" LIMIT %(export_limit)s")
        named["export_limit"] = limit
    return query, named


def series_query(filters: Filters) -> Query:
    """The series a readings export covers, with what the file says of each (`SERIES_INFO`
    order): id, site, device, metric, its domain, unit, unit symbol, resolution and
    value type, and the site's position (for GeoJSON)."""
    conditions: list[sql.Composable] = []
    params: list[Any] = []
    if filters.series:
        conditions.append(sql.SQL("s.id = ANY(%s)"))
        params.append(list(filters.series))
    if filters.sites:
        conditions.append(sql.SQL("d.site_id = ANY(%s)"))
        params.append(list(filters.sites))
    if filters.devices:
        conditions.append(sql.SQL("s.device_id = ANY(%s)"))
        params.append(list(filters.devices))
    if filters.metrics:
        conditions.append(sql.SQL("s.metric = ANY(%s)"))
        params.append(list(filters.metrics))
    query = (
        sql.SQL(
            "SELECT s.id, d.site_id, s.device_id, s.metric, m.domain, m.unit, m.unit_symbol,"
            " m.resolution, m.value_type, st.lon, st.lat FROM series s"
            " JOIN devices d ON d.id = s.device_id JOIN metrics m ON m.key = s.metric"
            " LEFT JOIN sites st ON st.id = d.site_id"
        )
        + _where(conditions)
        + sql.SQL(" ORDER BY s.id")
    )
    return query, params


def readings_columns(bucket: Bucket) -> tuple[Column, ...]:
    """The columns of the long readings export: one row per reading or bucket."""
    return RAW_COLUMNS if bucket == "raw" else BUCKET_COLUMNS


#: no LIMIT: the route's page queries take one; an export streams everything
UNLIMITED = 2**62


def raw_readings_query(
    series_ids: Sequence[int],
    start: datetime,
    end: datetime,
    *,
    after: tuple[datetime, int] | None = None,
    limit: int = UNLIMITED,
) -> Query:
    """Readings of the series in [start, end) ordered by time and series, after the
    key ``after`` (time, series): the raw route's query (rows as `RAW_COLUMNS`)."""
    query, params = queries.raw_page_query(series_ids, start, end, after=after, limit=limit)
    return query, params


def bucket_query(
    series_id: int,
    bucket: Bucket,
    start: datetime,
    end: datetime,
    tz: str,
    *,
    after: datetime | None = None,
    limit: int = UNLIMITED,
) -> Query:
    """One series' buckets in [start, end) after the bucket ``after``: the aggregate
    route's query, so an export holds the very numbers the JSON route serves (rows:
    time, end, count, good_count, sum, mean, std, min, max, first, last, coverage)."""
    query, params = queries.rollup_page_query(
        [series_id], bucket, start, end, after=after, limit=limit, tz=tz
    )
    return query, params


def bucket_row(series_id: int, row: Sequence[Any]) -> tuple[Any, ...]:
    """A bucket query row as the /v1 route's data row with its series: the series
    first, suspect readings (count − good_count) after the good ones (the export adds
    what it says of the series, `api.export_shape`)."""
    time, end, count, good_count, *rest = row
    return (series_id, time, end, count, good_count, count - good_count, *rest)
