"""Rollups in the database: merging partials in, rebuilding a time range, and reading
1-minute aggregates back.

Both ingest (every batch, in the readings' transaction) and `smartby rollup rebuild`
(repair) go through `merge_partials`: partials are computed in NumPy
(`core.rollups`), COPYed in binary into a session-local staging table, and merged by
the upsert `core.rollups.MERGE_SQL` that mirrors `core.rollups.merge`.

Hourly and daily rows exist for every series; 1-minute rows only for series that
report about twice a minute or more (`core.rollups.minute_readings`).  Every reader
of minutes goes through `minute_partials_query`, which takes an hour's minute rows
where they count all of its readings and computes the hour from ``readings``
otherwise, so a minute is exact whichever way it comes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal, LiteralString

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from core.rollups import (
    DEFAULT_TZ,
    HOUR_US,
    INSERT_STAGED_SQL,
    MERGE_SQL,
    RESOLUTIONS,
    ROLLUP_COLUMNS,
    LatestTimes,
    Partials,
    Resolution,
    bucket_starts,
    epoch_us,
    from_epoch_us,
    local_days,
    minute_readings,
    next_bucket_starts,
    partials,
)
from db.lifecycle import refuse_expired
from db.pgcopy import Column, encode_rows

#: staged partials: a resolution code (index into RESOLUTIONS) and the table's columns
STAGED_COLUMNS = (
    Column("resolution_code", "int2"),
    Column("series_id", "int4"),
    Column("bucket", "timestamptz"),
    Column("count", "int4"),
    Column("good_count", "int4"),
    Column("sum", "float8"),
    Column("sum_sq", "float8"),
    Column("min", "float8"),
    Column("max", "float8"),
    Column("first_time", "timestamptz"),
    Column("first_value", "float8"),
    Column("last_time", "timestamptz"),
    Column("last_value", "float8"),
)

_CREATE_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS rollups_staging (resolution_code int2,"
    " series_id int4, bucket timestamptz, count int4, good_count int4,"
    " sum float8, sum_sq float8, min float8, max float8, first_time timestamptz,"
    " first_value float8, last_time timestamptz, last_value float8)"
    " ON COMMIT DELETE ROWS"
)


#: the local days these partials touched wait for the indicator job
#: (db.indicators); resolution code 2 is the day
MARK_DAYS_SQL: LiteralString = (
    "INSERT INTO indicator_days_pending (day)"
    " SELECT DISTINCT bucket FROM rollups_staging WHERE resolution_code = 2"
    " ON CONFLICT (day) DO NOTHING"
)


def create_staging(conn: psycopg.Connection[TupleRow]) -> None:
    """The session's staging table (emptied at every commit)."""
    conn.execute(_CREATE_STAGING)


def _stage(cur: psycopg.Cursor[TupleRow], parts: list[Partials]) -> None:
    """COPY partials into ``rollups_staging``, each row with its resolution's code."""
    codes = np.concatenate(
        [np.full(len(p), RESOLUTIONS.index(p.resolution), np.int16) for p in parts]
    )
    columns = [np.concatenate([p.columns()[name] for p in parts]) for name in ROLLUP_COLUMNS]
    with cur.copy(
        "COPY rollups_staging (resolution_code, series_id, bucket, count, good_count,"
        " sum, sum_sq, min, max, first_time, first_value, last_time, last_value)"
        " FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.write(encode_rows(STAGED_COLUMNS, [codes, *columns]))


def _timestamps(micros: npt.NDArray[np.int64]) -> list[datetime]:
    return [from_epoch_us(us) for us in micros]


ReadingArrays = tuple[
    npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int16]
]


def reading_arrays(rows: list[TupleRow]) -> ReadingArrays:
    """(series_id, time µs, value, quality) rows as the four arrays the core takes."""
    series, times, values, quality = zip(*rows, strict=True)
    return (
        np.asarray(series, np.int32),
        np.asarray(times, np.int64),
        np.asarray(values, np.float64),
        np.asarray(quality, np.int16),
    )


def queue_days(conn: psycopg.Connection[TupleRow], day_starts_us: npt.NDArray[np.int64]) -> None:
    """Queue these local days (their midnights) for the indicator job."""
    conn.execute(
        "INSERT INTO indicator_days_pending (day) SELECT unnest(%s::timestamptz[])"
        " ON CONFLICT (day) DO NOTHING",
        (_timestamps(np.unique(day_starts_us)),),
    )


#: which readings get 1-minute rows: "often" is what ingest and repair store (the
#: readings `core.rollups.minute_readings` picks); "every reading" is how ingest
#: stored them before issue 17 and "none" that issue's option (b), both kept only for
#: bench/aggregate.py to measure beside it.  Readers are exact with any of them
#: (`minute_partials_query`).
MinuteRows = Literal["often", "every reading", "none"]


def partials_to_store(
    series_ids: npt.NDArray[np.int32],
    times_us: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    quality: npt.NDArray[np.int16],
    tz: str = DEFAULT_TZ,
    *,
    latest: LatestTimes | None = None,
    minutes: MinuteRows = "often",
) -> list[Partials]:
    """The partials these readings add to ``rollups``: hours and days of all of them,
    and minutes as ``minutes`` says (`MinuteRows`)."""
    resolutions: tuple[Resolution, ...] = ("1h", "1d")
    parts = [partials(series_ids, times_us, values, quality, res, tz) for res in resolutions]
    if minutes == "every reading":
        parts.append(partials(series_ids, times_us, values, quality, "1m", tz))
    elif minutes == "often":
        often = minute_readings(series_ids, times_us, latest)
        if often.all():
            parts.append(partials(series_ids, times_us, values, quality, "1m", tz))
        elif often.any():
            picked = (series_ids[often], times_us[often], values[often], quality[often])
            parts.append(partials(*picked, "1m", tz))
    return [p for p in parts if len(p)]


def merge_partials(
    conn: psycopg.Connection[TupleRow],
    series_ids: npt.NDArray[np.int32],
    times_us: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    quality: npt.NDArray[np.int16],
    tz: str = DEFAULT_TZ,
    *,
    latest: LatestTimes | None = None,
    minutes: MinuteRows = "often",
    mark_days: bool = True,
) -> int:
    """Merge these readings' partials into ``rollups`` (`partials_to_store`); call
    inside a transaction, with `create_staging` done on this connection.  ``latest``
    is the writer's memory of each series' latest reading (`core.rollups.LatestTimes`);
    ``minutes`` is ingest's choice unless a benchmark asks otherwise (`MinuteRows`).
    ``mark_days=False`` leaves queueing the local days for the indicator job to the
    caller (`MARK_DAYS_SQL`, later in the same transaction: the staged rows stay until
    commit).  Returns the number of partial rows merged."""
    parts = partials_to_store(
        series_ids, times_us, values, quality, tz, latest=latest, minutes=minutes
    )
    if not parts:
        return 0
    with conn.cursor() as cur:
        _stage(cur, parts)
        cur.execute(MERGE_SQL)
        if mark_days:
            cur.execute(MARK_DAYS_SQL)
    return sum(len(p) for p in parts)


# -- reading minutes back ---------------------------------------------------------------

#: the columns of `minute_partials_query`'s rows: the rollups table's, from the bucket on
MINUTE_COLUMNS = ROLLUP_COLUMNS[1:]

_MINUTE_PARTIALS = """
    SELECT x.* FROM generate_series(
        -- from the day of the series' first hour in the range (no walk through empty days)
        date_bin('1 day', greatest(%(minutes_from)s, (
            SELECT min(f.bucket) FROM rollups f
            WHERE f.series_id = {series} AND f.resolution = '1h'
              AND f.bucket > %(minutes_from)s - interval '1 hour')), timestamptz 'epoch'),
        %(minutes_to)s, interval '1 day') AS d(day)
    CROSS JOIN LATERAL (SELECT greatest(d.day, %(minutes_from)s) AS lo,
                               least(d.day + interval '1 day', %(minutes_to)s) AS hi) b
    CROSS JOIN LATERAL (
        WITH hours AS MATERIALIZED (
            SELECT h.bucket AS hour, h.count = coalesce(
                       (SELECT sum(m.count) FROM rollups m
                        WHERE m.series_id = h.series_id AND m.resolution = '1m'
                          AND m.bucket >= h.bucket AND m.bucket < h.bucket + interval '1 hour'),
                       0) AS stored
            FROM rollups h
            WHERE h.series_id = {series} AND h.resolution = '1h'
              AND h.bucket > b.lo - interval '1 hour' AND h.bucket < b.hi)
        SELECT m.bucket, m.count, m.good_count, m.sum, m.sum_sq, m.min, m.max,
               m.first_time, m.first_value, m.last_time, m.last_value
        FROM hours c JOIN rollups m
          ON c.stored AND m.series_id = {series} AND m.resolution = '1m'
         AND m.bucket >= c.hour AND m.bucket < c.hour + interval '1 hour'
         AND m.bucket >= b.lo AND m.bucket < b.hi
        UNION ALL
        SELECT y.* FROM (
            SELECT date_bin('1 minute', r.time, timestamptz 'epoch') AS bucket,
                   count(*)::int4, (count(*) FILTER (WHERE r.quality IN (1, 2)))::int4,
                   sum(r.value), sum(r.value * r.value), min(r.value), max(r.value),
                   min(r.time), (array_agg(r.value ORDER BY r.time))[1],
                   max(r.time), (array_agg(r.value ORDER BY r.time DESC))[1]
            FROM readings r
            WHERE EXISTS (SELECT FROM hours WHERE NOT stored) AND r.series_id = {series}
              AND r.time >= b.lo AND r.time < b.hi + interval '1 minute'
              AND r.time >= %(minutes_from)s AND r.time < %(readings_to)s
              AND r.quality NOT IN (4, 9) AND r.value <> 'NaN'
            GROUP BY 1) y
        WHERE y.bucket >= b.lo AND y.bucket < b.hi AND NOT EXISTS (
            SELECT FROM hours c
            WHERE c.stored AND y.bucket >= c.hour AND y.bucket < c.hour + interval '1 hour')
        ORDER BY bucket) x
    ORDER BY d.day, x.bucket"""


def minute_partials_query(
    series: sql.Composable, limit: sql.Composable | None = None
) -> sql.Composed:
    """The 1-minute partials of one series (``series``: a placeholder or literal)
    whose minutes start in ``[%(minutes_from)s, %(minutes_to)s)``, in time order, as
    `MINUTE_COLUMNS`; the bounds' parameters come from `minute_bounds`.

    Day by day (UTC days): an hour whose minute rows count as many readings as its
    hourly row is read from them (a series that reports often); the minutes of the
    day's other hours are computed from its readings with the rollups' rules (FAIL,
    MISSING and NaN left out; first and last the earliest and latest reading), in
    one pass along the readings' primary key (series_id, time) over the day, skipped
    when every hour has its rows.  An hour with no hourly row has no usable reading,
    so no minute.  The plan streams: with a LIMIT, PostgreSQL walks the days in
    order and stops after enough minutes, so a page costs what its days cost however
    long the range is.

    A pass a day, not one an hour: a series reporting once a minute has no minute
    rows, and computing its day hour by hour (a nested loop over the hypertable) cost
    PostgreSQL about five times the plain GROUP BY (bench/api.py --minutes).  The
    worst case, a day whose stored hours alternate with computed ones, costs what
    computing the day from the readings costs.  (The constant bounds on the readings
    let TimescaleDB leave out the chunks outside the range when planning.)
    """
    query = sql.SQL(_MINUTE_PARTIALS).format(series=series)
    if limit is not None:
        query += sql.SQL(" LIMIT {}").format(limit)
    return query


def minute_bounds(start: datetime, end: datetime) -> dict[str, datetime]:
    """The parameters of `minute_partials_query` for minutes starting in [start, end)."""
    return {
        "minutes_from": start,
        "minutes_to": end,
        # the last minute's readings end less than a minute after ``end``
        "readings_to": end + timedelta(minutes=1),
    }


#: replace a stored row by the new one, column by column
_REPLACE_CONFLICT: LiteralString = """
    ON CONFLICT (series_id, resolution, bucket) DO UPDATE SET
        count = EXCLUDED.count, good_count = EXCLUDED.good_count, sum = EXCLUDED.sum,
        sum_sq = EXCLUDED.sum_sq, min = EXCLUDED.min, max = EXCLUDED.max,
        first_time = EXCLUDED.first_time, first_value = EXCLUDED.first_value,
        last_time = EXCLUDED.last_time, last_value = EXCLUDED.last_value"""

#: Hour partials replace what was stored (the hour was recomputed from its readings)
REPLACE_SQL: LiteralString = INSERT_STAGED_SQL + _REPLACE_CONFLICT

# A day is the merge of its hours (local days are whole hours in zones with
# whole-hour offsets), so a day row is rebuilt from the hour rows, not the readings.
_DAY_FROM_HOURS: LiteralString = (
    """
    WITH days AS (
        SELECT * FROM unnest(%s::int4[], %s::timestamptz[], %s::timestamptz[])
                      AS d(series_id, day, next_day)
    ), merged AS (
        SELECT d.series_id, d.day, sum(h.count)::int4 AS count,
               sum(h.good_count)::int4 AS good_count, sum(h.sum) AS sum,
               sum(h.sum_sq) AS sum_sq, min(h.min) AS min, max(h.max) AS max,
               min(h.first_time) AS first_time,
               (array_agg(h.first_value ORDER BY h.first_time, h.first_value))[1]
                   AS first_value,
               max(h.last_time) AS last_time,
               (array_agg(h.last_value ORDER BY h.last_time DESC, h.last_value DESC))[1]
                   AS last_value
        FROM days d JOIN rollups h
          ON h.series_id = d.series_id AND h.resolution = '1h'
         AND h.bucket >= d.day AND h.bucket < d.next_day
        GROUP BY d.series_id, d.day
    ), gone AS (
        DELETE FROM rollups r USING days d
        WHERE r.series_id = d.series_id AND r.resolution = '1d' AND r.bucket = d.day
          AND NOT EXISTS (SELECT 1 FROM merged m
                          WHERE m.series_id = d.series_id AND m.day = d.day)
    )
    INSERT INTO rollups AS r (series_id, resolution, bucket, count, good_count, sum, sum_sq,
                              min, max, first_time, first_value, last_time, last_value)
    SELECT series_id, '1d', day, count, good_count, sum, sum_sq, min, max, first_time,
           first_value, last_time, last_value
    FROM merged"""
    + _REPLACE_CONFLICT
)


def recompute_hours(
    conn: psycopg.Connection[TupleRow],
    series_ids: npt.NDArray[np.int32],
    times_us: npt.NDArray[np.int64],
    tz: str = DEFAULT_TZ,
) -> int:
    """Recompute the rollups around these readings from what ``readings`` holds now:
    the hour bucket of each reading's hour (and its minute buckets, for a series that
    reports often enough to have them: `core.rollups.minute_readings` judged on the
    hour) from its readings, and the day from its hours.  For readings whose flag
    changed after they were stored (a spike is only seen once the next reading
    arrives): a FAIL leaves the rollup, and min, max, first and last cannot be
    "un-merged", so the buckets are recomputed; an hour is small.  Call inside a
    transaction, with `create_staging` done.

    Safe beside concurrent merges: rows are replaced, not added to, from readings
    read after the old rows were deleted; another worker's merge either committed
    before (and its readings are read here) or waits on the rows locked here and then
    adds its own readings on top.  Returns the number of hours recomputed.
    """
    if not len(series_ids):
        return 0
    keys = np.unique(
        np.stack([np.asarray(series_ids, np.int64), np.asarray(times_us) // HOUR_US]), axis=1
    )
    hour_series = keys[0].astype(np.int32)
    hours = _timestamps(keys[1] * HOUR_US)
    with conn.cursor(binary=True) as cur:
        cur.execute(
            "DELETE FROM rollups r USING unnest(%s::int4[], %s::timestamptz[]) AS v(s, h)"
            " WHERE r.series_id = v.s AND ((r.resolution = '1m' AND r.bucket >= v.h"
            " AND r.bucket < v.h + interval '1 hour') OR (r.resolution = '1h'"
            " AND r.bucket = v.h))",
            (hour_series.tolist(), hours),
        )
        rows = cur.execute(
            "SELECT r.series_id, (extract(epoch FROM r.time) * 1000000)::int8, r.value,"
            " r.quality FROM readings r JOIN unnest(%s::int4[], %s::timestamptz[]) AS v(s, h)"
            " ON r.series_id = v.s AND r.time >= v.h AND r.time < v.h + interval '1 hour'",
            (hour_series.tolist(), hours),
        ).fetchall()
    if rows:
        readings = reading_arrays(rows)
        parts = [partials(*readings, "1h", tz)]
        series, times, values, quality = readings
        often = minute_readings(series, times)
        if often.any():
            parts.append(
                partials(series[often], times[often], values[often], quality[often], "1m", tz)
            )
        parts = [p for p in parts if len(p)]
        if parts:
            with conn.cursor() as cur:
                # the batch's own merge may have filled the staging table already
                cur.execute("DELETE FROM rollups_staging")
                _stage(cur, parts)
                cur.execute(REPLACE_SQL)
                cur.execute("DELETE FROM rollups_staging")
    day_starts = bucket_starts(keys[1] * HOUR_US, "1d", tz)
    days = np.unique(np.stack([keys[0], day_starts]), axis=1)
    next_days = next_bucket_starts(days[1], "1d", tz)
    conn.execute(
        _DAY_FROM_HOURS,
        (
            days[0].astype(np.int32).tolist(),
            _timestamps(days[1]),
            _timestamps(next_days),
        ),
    )
    queue_days(conn, days[1])
    return int(keys.shape[1])


def rebuild(
    conn: psycopg.Connection[TupleRow],
    start: datetime,
    end: datetime,
    *,
    tz: str = DEFAULT_TZ,
    progress: Callable[[datetime, datetime], None] | None = None,
) -> tuple[datetime, datetime, int]:
    """Recompute every rollup of the local days touching [start, end) from readings.

    Whole local days, because a day bucket can only be right when all of its readings
    are counted (and minute and hour buckets nest inside days).  One transaction per
    day: readers see each day switch from old to new at once.  Returns the rebuilt
    span and the number of readings read.
    """
    if end <= start:
        raise ValueError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    days = local_days(epoch_us(start), epoch_us(end), tz)
    ends = next_bucket_starts(days, "1d", tz)
    refuse_expired(conn, from_epoch_us(days[0]), "a rollup rebuild")
    create_staging(conn)
    conn.commit()
    total = 0
    for lo, hi in zip(_timestamps(days), _timestamps(ends), strict=True):
        with conn.transaction():
            # through the key, series by series (the table has no index on time alone)
            conn.execute(
                "DELETE FROM rollups r USING series s WHERE r.series_id = s.id"
                " AND r.resolution IN ('1m', '1h', '1d') AND r.bucket >= %s AND r.bucket < %s",
                (lo, hi),
            )
            with conn.cursor(binary=True) as cur:
                rows = cur.execute(
                    "SELECT series_id, (extract(epoch FROM time) * 1000000)::int8, value,"
                    " quality FROM readings WHERE time >= %s AND time < %s",
                    (lo, hi),
                ).fetchall()
            if rows:
                merge_partials(conn, *reading_arrays(rows), tz)
            total += len(rows)
        if progress is not None:
            progress(lo, hi)
    return from_epoch_us(days[0]), from_epoch_us(ends[-1]), total
