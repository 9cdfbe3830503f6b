"""The API's SQL: plain functions returning ``(query, params)``.

Identifiers are composed with `psycopg.sql`, values are always parameters.  They are
unit-tested without a database (tests/api/test_queries.py) and run against the real
one by the route tests.  Every list is ordered, and every page is a keyset page
(``WHERE (time, key) > cursor ORDER BY time, key LIMIT n``), so paging stays stable
and cheap while new data arrives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, LiteralString

from psycopg import sql

from api.params import BoundingBox, Cursor
from db.registry import PUBLIC_DEVICE_COLUMNS
from db.rollups import minute_bounds, minute_partials_query

Query = tuple[sql.SQL | sql.Composed, dict[str, Any]]

#: metric domains published only in aggregates of at least 15 minutes (privacy,
#: DESIGN.md; core.indicators.MIN_PUBLISHED_BUCKET_S)
AGGREGATE_ONLY_DOMAINS: tuple[str, ...] = ("traffic",)


def _where(conditions: Sequence[sql.Composable]) -> sql.Composed:
    if not conditions:
        return sql.Composed([])
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)


def _eq(column: LiteralString, param: str) -> sql.Composable:
    """``<table>.<column> = %(param)s`` with ``column`` given as ``alias.name``."""
    table, name = column.split(".")
    return sql.SQL("{} = {}").format(sql.Identifier(table, name), sql.Placeholder(param))


def _equalities(
    *filters: tuple[LiteralString, str, object],
) -> tuple[list[sql.Composable], dict[str, Any]]:
    """`_eq` conditions and their parameters for each (column, param, value) whose
    value is given (not None)."""
    given = [(column, param, value) for column, param, value in filters if value is not None]
    conditions: list[sql.Composable] = [_eq(column, param) for column, param, _ in given]
    return conditions, {param: value for _, param, value in given}


# ---------------------------------------------------------------------- catalogue

_SITE_COLUMNS = sql.SQL(
    "s.id, s.name, s.kind, s.municipality, s.lon, s.lat, s.properties,"
    " ARRAY(SELECT d.id FROM devices d WHERE d.site_id = s.id ORDER BY d.id) AS devices"
)


def sites_query(
    kind: str | None = None, bbox: BoundingBox | None = None, site_id: str | None = None
) -> Query:
    conditions, params = _equalities(("s.id", "site_id", site_id), ("s.kind", "kind", kind))
    if bbox is not None:
        conditions.append(
            sql.SQL(
                "s.lon BETWEEN %(min_lon)s AND %(max_lon)s"
                " AND s.lat BETWEEN %(min_lat)s AND %(max_lat)s"
            )
        )
        params.update(
            min_lon=bbox.min_lon, max_lon=bbox.max_lon, min_lat=bbox.min_lat, max_lat=bbox.max_lat
        )
    query = sql.SQL("SELECT {} FROM sites s{} ORDER BY s.id").format(
        _SITE_COLUMNS, _where(conditions)
    )
    return query, params


def _device_filters(
    kind: str | None, site_id: str | None, device_id: str | None
) -> tuple[list[sql.Composable], dict[str, Any]]:
    return _equalities(
        ("d.id", "device_id", device_id),
        ("d.kind", "kind", kind),
        ("d.site_id", "site_id", site_id),
    )


_DEVICE_METRICS = sql.SQL(
    "ARRAY(SELECT se.metric FROM series se WHERE se.device_id = d.id ORDER BY se.metric) AS metrics"
)


def devices_query(
    kind: str | None = None,
    site_id: str | None = None,
    device_id: str | None = None,
    *,
    admin: bool = False,
) -> Query:
    """Public fields only (`PUBLIC_DEVICE_COLUMNS`: never the secret hash); the admin
    view adds the calibration and whether a secret is set (never the hash either)."""
    conditions, params = _device_filters(kind, site_id, device_id)
    columns = sql.SQL(", ").join(sql.Identifier("d", c) for c in PUBLIC_DEVICE_COLUMNS)
    if admin:
        columns += sql.SQL(", d.calibration, d.secret_hash IS NOT NULL AS has_secret")
    query = sql.SQL("SELECT {}, {} FROM devices d{} ORDER BY d.id").format(
        columns, _DEVICE_METRICS, _where(conditions)
    )
    return query, params


METRIC_COLUMNS: tuple[str, ...] = (
    "key",
    "name",
    "domain",
    "unit",
    "unit_symbol",
    "definition_uri",
    "min_value",
    "max_value",
    "value_type",
    "molar_mass",
    "resolution",
    "description",
)


def metrics_query(key: str | None = None) -> Query:
    conditions = [_eq("m.key", "key")] if key is not None else []
    query = sql.SQL("SELECT {} FROM metrics m{} ORDER BY m.key").format(
        sql.SQL(", ").join(sql.Identifier("m", c) for c in METRIC_COLUMNS), _where(conditions)
    )
    return query, ({"key": key} if key is not None else {})


_SERIES_FROM = sql.SQL(
    " FROM series se JOIN devices d ON d.id = se.device_id JOIN metrics m ON m.key = se.metric"
)


def _series_filters(
    site_id: str | None, metric: str | None, kind: str | None, device_id: str | None
) -> tuple[list[sql.Composable], dict[str, Any]]:
    return _equalities(
        ("d.site_id", "site_id", site_id),
        ("se.metric", "metric", metric),
        ("d.kind", "kind", kind),
        ("se.device_id", "device_id", device_id),
    )


def series_query(
    site_id: str | None = None,
    metric: str | None = None,
    kind: str | None = None,
    device_id: str | None = None,
) -> Query:
    conditions, params = _series_filters(site_id, metric, kind, device_id)
    query = (
        sql.SQL(
            "SELECT se.id, se.device_id, d.site_id, d.kind, se.metric, m.unit, m.unit_symbol,"
            " se.created_at"
        )
        + _SERIES_FROM
        + _where(conditions)
        + sql.SQL(" ORDER BY se.id")
    )
    return query, params


def latest_query(
    kind: str | None = None, metric: str | None = None, site_id: str | None = None
) -> Query:
    """The latest reading of every series, from the readings' (series_id, time) key,
    one backward index probe per series.  Series of aggregate-only metrics (traffic)
    give their latest complete hour from the rollups instead: the sum for counts, the
    mean otherwise, and no quality flag (an aggregate has none)."""
    conditions, params = _series_filters(site_id, metric, kind, None)
    params["private"] = list(AGGREGATE_ONLY_DOMAINS)
    columns = sql.SQL("se.id, se.device_id, d.site_id, d.kind, se.metric, m.unit, ")
    readings = (
        sql.SQL("SELECT ")
        + columns
        + sql.SQL("r.time, r.value, r.quality, 'raw' AS aggregate")
        + _SERIES_FROM
        + sql.SQL(
            " CROSS JOIN LATERAL (SELECT time, value, quality FROM readings"
            " WHERE series_id = se.id ORDER BY time DESC LIMIT 1) r"
        )
        + _where([*conditions, sql.SQL("m.domain <> ALL(%(private)s)")])
    )
    hourly = (
        sql.SQL("SELECT ")
        + columns
        + sql.SQL(
            "h.bucket, CASE WHEN m.value_type = 'count' THEN h.sum ELSE h.sum / h.count END,"
            " NULL::smallint, '1h'"
        )
        + _SERIES_FROM
        + sql.SQL(
            " CROSS JOIN LATERAL (SELECT bucket, sum, count FROM rollups"
            " WHERE series_id = se.id AND resolution = '1h'"
            " AND bucket <= now() - interval '1 hour' ORDER BY bucket DESC LIMIT 1) h"
        )
        + _where([*conditions, sql.SQL("m.domain = ANY(%(private)s)")])
    )
    query = readings + sql.SQL(" UNION ALL ") + hourly + sql.SQL(" ORDER BY 1")
    return query, params


# ---------------------------------------------------------------------- time series


def series_info_query(series_id: int) -> Query:
    query = (
        sql.SQL("SELECT se.id, se.device_id, d.site_id, se.metric, m.domain, m.unit, m.value_type")
        + _SERIES_FROM
        + sql.SQL(" WHERE se.id = %(series_id)s")
    )
    return query, {"series_id": series_id}


def site_metric_series_query(site_id: str, metric: str) -> Query:
    """Whether the site and the metric exist, the metric's domain, unit and value type,
    and the site's series of that metric (one per device measuring it)."""
    query = sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM sites WHERE id = %(site_id)s),"
        " m.domain, m.unit, m.value_type,"
        " ARRAY(SELECT se.id FROM series se JOIN devices d ON d.id = se.device_id"
        "       WHERE d.site_id = %(site_id)s AND se.metric = %(metric)s ORDER BY se.id)"
        " FROM (SELECT 1) one LEFT JOIN metrics m ON m.key = %(metric)s"
    )
    return query, {"site_id": site_id, "metric": metric}


_BUCKET_WIDTH: dict[str, LiteralString] = {"1m": "1 minute", "1h": "1 hour"}


def rollup_page_query(
    series_ids: Sequence[int],
    resolution: str,
    start: datetime,
    end: datetime,
    *,
    after: datetime | None,
    limit: int,
    tz: str,
) -> Query:
    """Buckets starting in ``[start, end)`` (after the cursor), the partials of all the
    given series merged per bucket the way `core.rollups.merge` does, finished the way
    `core.rollups.finalize` does: mean, population standard deviation (clamped at 0),
    and coverage = readings / expected readings, with a day's true local length.

    The expected number comes from each series' reporting interval, estimated as the
    median spacing of readings inside its hourly buckets over the week before ``end``
    (the interval is not registered anywhere; the data says it).  That rate is one row
    computed once (MATERIALIZED): inlined, a generic plan of the prepared query (psycopg
    prepares a query run five times) estimated one page row and put the median on the
    inner side of a nested loop, recomputed per bucket: 25 ms for 30 days hourly
    instead of 1.5 (issue 17).

    Minutes come from `db.rollups.minute_partials_query`: the minute rows of a series
    that reports often, the readings' own minutes otherwise (issue 17), the same
    numbers either way.
    """
    bucket_end: sql.Composable
    if resolution == "1d":
        bucket_end = sql.SQL(
            "((p.bucket AT TIME ZONE %(tz)s) + interval '1 day') AT TIME ZONE %(tz)s"
        )
    else:
        bucket_end = sql.SQL("p.bucket + {}::interval").format(
            sql.Literal(_BUCKET_WIDTH[resolution])
        )
    params: dict[str, Any] = {
        "series": list(series_ids),
        "series_id": series_ids[0] if len(series_ids) == 1 else None,
        "resolution": resolution,
        "start": start,
        "end": end,
        "limit": limit,
    }
    page: sql.Composable
    if resolution == "1m":
        page, minute_params = _minute_page(series_ids, start, end, after=after)
        params.update(minute_params)
    else:
        page = _rollup_page(len(series_ids), after is not None)
    query = sql.SQL(
        """WITH spacing AS (
    SELECT series_id,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM last_time - first_time) / (count - 1)) AS interval_s
    FROM rollups
    WHERE series_id = ANY(%(series)s) AND resolution = '1h' AND count > 1
      AND bucket >= greatest(%(start)s, least(%(end)s, now()) - interval '7 days')
      AND bucket < %(end)s
    GROUP BY series_id
), rate AS MATERIALIZED (
    SELECT sum(1 / interval_s) AS per_s FROM spacing WHERE interval_s > 0
), page AS (
{page}
)
SELECT p.bucket, {bucket_end} AS bucket_end, p.count::int8, p.good_count::int8, p.sum,
       p.sum / p.count AS mean,
       sqrt(greatest(p.sum_sq - p.count * (p.sum / p.count) * (p.sum / p.count), 0)
            / p.count) AS std,
       p.min, p.max, p.first, p.last,
       p.count / (extract(epoch FROM {bucket_end} - p.bucket)::float8 * r.per_s) AS coverage
FROM page p CROSS JOIN rate r
ORDER BY p.bucket"""
    ).format(page=page, bucket_end=bucket_end)
    if resolution == "1d":
        params["tz"] = tz
    if after is not None:
        params["after"] = after
    return query, params


def _rollup_page(series_count: int, paged: bool) -> sql.Composable:
    """Hourly or daily buckets from the rollups table: one series' rows as they are, in
    key order (no grouping, no sort); several series' merged per bucket."""
    cursor = sql.SQL(" AND bucket > %(after)s") if paged else sql.SQL("")
    if series_count == 1:
        return sql.SQL(
            """    SELECT bucket, count, good_count, sum, sum_sq, min, max,
           first_value AS first, last_value AS last
    FROM rollups
    WHERE series_id = %(series_id)s AND resolution = %(resolution)s
      AND bucket >= %(start)s AND bucket < %(end)s{cursor}
    ORDER BY bucket
    LIMIT %(limit)s"""
        ).format(cursor=cursor)
    return sql.SQL(
        """    SELECT bucket, sum(count) AS count, sum(good_count) AS good_count,
           sum(sum) AS sum, sum(sum_sq) AS sum_sq, min(min) AS min, max(max) AS max,
           (array_agg(first_value ORDER BY first_time, first_value))[1] AS first,
           (array_agg(last_value ORDER BY last_time DESC, last_value DESC))[1] AS last
    FROM rollups
    WHERE series_id = ANY(%(series)s) AND resolution = %(resolution)s
      AND bucket >= %(start)s AND bucket < %(end)s{cursor}
    GROUP BY bucket
    ORDER BY bucket
    LIMIT %(limit)s"""
    ).format(cursor=cursor)


#: a bucket start is a whole microsecond: the first after the cursor is this much later
_MICROSECOND = timedelta(microseconds=1)


def _minute_page(
    series_ids: Sequence[int],
    start: datetime,
    end: datetime,
    *,
    after: datetime | None,
) -> tuple[sql.Composable, dict[str, Any]]:
    """1-minute buckets: from the minute rollups where a series has them, computed
    from its readings where not (`db.rollups.minute_partials_query`).  Several series
    come as one ordered stream each, combined per bucket, each stream stopping after
    ``limit`` minutes."""
    first = start if after is None or after < start else after + _MICROSECOND
    params: dict[str, Any] = dict(minute_bounds(first, max(first, end)))
    placeholder = sql.Placeholder("limit")
    if len(series_ids) == 1:
        stream = minute_partials_query(sql.Placeholder("series_id"), placeholder)
        page = sql.SQL(
            """    SELECT bucket, count, good_count, sum, sum_sq, min, max,
           first_value AS first, last_value AS last
    FROM ({stream}) m"""
        ).format(stream=stream)
        return page, params
    streams: list[sql.Composable] = []
    for i, series_id in enumerate(series_ids):
        name = f"minute_series_{i}"
        params[name] = series_id
        stream = minute_partials_query(sql.Placeholder(name), placeholder)
        streams.append(sql.SQL("({})").format(stream))
    page = sql.SQL(
        """    SELECT bucket, sum(count) AS count, sum(good_count) AS good_count,
           sum(sum) AS sum, sum(sum_sq) AS sum_sq, min(min) AS min, max(max) AS max,
           (array_agg(first_value ORDER BY first_time, first_value))[1] AS first,
           (array_agg(last_value ORDER BY last_time DESC, last_value DESC))[1] AS last
    FROM ({streams}) m
    GROUP BY bucket
    ORDER BY bucket
    LIMIT %(limit)s"""
    ).format(streams=sql.SQL(" UNION ALL ").join(streams))
    return page, params


def raw_page_query(
    series_ids: Sequence[int],
    start: datetime,
    end: datetime,
    *,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Query:
    """Readings with times in ``[start, end)`` after the cursor (time, series)."""
    conditions: list[sql.Composable] = [
        sql.SQL("series_id = ANY(%(series)s)"),
        sql.SQL("time >= %(start)s"),
        sql.SQL("time < %(end)s"),
    ]
    params: dict[str, Any] = {"series": list(series_ids), "start": start, "end": end}
    if after is not None:
        # the plain bound lets TimescaleDB skip whole chunks before the cursor
        conditions.append(
            sql.SQL(
                "time >= %(after_time)s AND (time, series_id) > (%(after_time)s, %(after_series)s)"
            )
        )
        params.update(after_time=after[0], after_series=after[1])
    query = sql.SQL(
        "SELECT time, series_id, value, quality FROM readings{} ORDER BY time, series_id"
        " LIMIT %(limit)s"
    ).format(_where(conditions))
    params["limit"] = limit
    return query, params


# ---------------------------------------------------------------------- indicators


@dataclass(frozen=True, slots=True)
class IndicatorTable:
    """An indicator table paged by (``time_column``, ``key_column``)."""

    table: LiteralString
    time_column: LiteralString
    key_column: LiteralString
    columns: tuple[LiteralString, ...]
    filters: tuple[LiteralString, ...]  # columns a caller may filter on by equality
    #: the range served (and exported) when ``from`` is not given
    default_span: timedelta = timedelta(days=7)


AQI_HOURLY = IndicatorTable(
    "aqi_hourly",
    "hour",
    "site_id",
    ("site_id", "hour", "level", "dominant", "pm25", "pm10", "no2", "o3", "so2"),
    ("site_id",),
)
ENERGY_HOURLY = IndicatorTable(
    "energy_hourly",
    "hour",
    "site_id",
    ("site_id", "hour", "kwh", "co2e_kg", "coverage"),
    ("site_id",),
)
ENERGY_DAILY = IndicatorTable(
    "energy_daily",
    "day_start",
    "site_id",
    ("site_id", "day", "day_start", "kwh", "co2e_kg", "coverage", "grid_factor_g_per_kwh"),
    ("site_id",),
    default_span=timedelta(days=90),
)
TRAFFIC_HOURLY = IndicatorTable(
    "traffic_hourly",
    "hour",
    "device_id",
    (
        "device_id",
        "site_id",
        "hour",
        "volume",
        "heavy_volume",
        "mean_speed_kmh",
        "heavy_share",
        "coverage",
    ),
    ("device_id", "site_id"),
)
TRAFFIC_DAILY = IndicatorTable(
    "traffic_daily",
    "day_start",
    "device_id",
    (
        "device_id",
        "site_id",
        "day",
        "day_start",
        "volume",
        "heavy_volume",
        "mean_speed_kmh",
        "heavy_share",
        "coverage",
    ),
    ("device_id", "site_id"),
    default_span=timedelta(days=90),
)


def indicator_page_query(
    table: IndicatorTable,
    start: datetime,
    end: datetime,
    *,
    equal: dict[str, str | None],
    after: Cursor | None,
    limit: int,
) -> Query:
    """Rows with ``time_column`` in ``[start, end)``, optionally filtered by equality
    on the table's filter columns, after the cursor."""
    t = sql.Identifier(table.time_column)
    k = sql.Identifier(table.key_column)
    conditions: list[sql.Composable] = [
        sql.SQL("{} >= %(start)s").format(t),
        sql.SQL("{} < %(end)s").format(t),
    ]
    params: dict[str, Any] = {"start": start, "end": end, "limit": limit}
    for column, value in equal.items():
        if column not in table.filters:
            raise ValueError(f"{table.table} cannot be filtered on {column!r}")
        if value is not None:
            conditions.append(
                sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
            )
            params[column] = value
    if after is not None:
        conditions.append(
            sql.SQL(
                "{t} >= %(after_time)s AND ({t}, {k}) > (%(after_time)s, %(after_key)s)"
            ).format(t=t, k=k)
        )
        params.update(after_time=after.time, after_key=after.key)
    query = sql.SQL("SELECT {} FROM {}{} ORDER BY {}, {} LIMIT %(limit)s").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in table.columns),
        sql.Identifier(table.table),
        _where(conditions),
        t,
        k,
    )
    return query, params


def aqi_now_query() -> Query:
    """Each station's latest hour: one backward probe of aqi_hourly's key per site."""
    query = sql.SQL(
        "SELECT s.id, s.name, s.lon, s.lat, a.hour, a.level, a.dominant,"
        " a.pm25, a.pm10, a.no2, a.o3, a.so2"
        " FROM sites s CROSS JOIN LATERAL (SELECT * FROM aqi_hourly"
        " WHERE site_id = s.id ORDER BY hour DESC LIMIT 1) a ORDER BY s.id"
    )
    return query, {}


def traffic_adt_query(device_id: str | None = None, site_id: str | None = None) -> Query:
    conditions, params = _equalities(
        ("t.device_id", "device_id", device_id), ("t.site_id", "site_id", site_id)
    )
    query = sql.SQL(
        "SELECT t.device_id, t.site_id, t.vehicles_per_day, t.full_days, t.first_day,"
        " t.last_day, t.heavy_share FROM traffic_adt t{} ORDER BY t.device_id"
    ).format(_where(conditions))
    return query, params
