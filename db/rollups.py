"""Rollups in the database: merging partials in, and rebuilding a time range.

Both ingest (every batch, in the readings' transaction) and `smartby rollup rebuild`
(repair) go through `merge_partials`: partials are computed in NumPy
(`core.rollups`), COPYed in binary into a session-local staging table, and merged by
the upsert `core.rollups.MERGE_SQL` that mirrors `core.rollups.merge`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import LiteralString

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import TupleRow

from core.rollups import (
    DEFAULT_TZ,
    HOUR_US,
    INSERT_STAGED_SQL,
    MERGE_SQL,
    RESOLUTIONS,
    ROLLUP_COLUMNS,
    Partials,
    bucket_starts,
    epoch_us,
    from_epoch_us,
    local_days,
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


#: the staging code of a 1-minute partial the watermark says is probably new
FRESH_MINUTE = 3

# New 1-minute buckets go in by a plain INSERT (no conflict handling: cheaper than
# the upsert), everything else by the merge; a conflict on a "new" bucket means
# another worker wrote it meanwhile, and the caller falls back to merging it all.
_INSERT_FRESH_SQL: LiteralString = INSERT_STAGED_SQL + " WHERE resolution_code = 3"
_MERGE_REST_SQL: LiteralString = (
    INSERT_STAGED_SQL + " WHERE resolution_code <> 3" + MERGE_SQL[len(INSERT_STAGED_SQL) :]
)


class MinuteWatermark:
    """The latest 1-minute bucket merged per series by this writer: a later one is
    probably new.

    A series reporting once a minute brings a new 1-minute rollup row with nearly
    every reading, and inserting it through the upsert costs PostgreSQL about twice
    what a plain insert does (bench/aggregate.py).  This is only a hint: a bucket
    wrongly taken for new makes the plain insert fail on the key, and the batch's
    partials are then merged as usual; a bucket wrongly taken for old is merged.  So
    it needs no locking and may be out of date (another worker, a rolled-back batch).
    Series never seen since start are merged.
    """

    #: below every bucket: a series this writer has not merged yet
    _UNKNOWN = np.iinfo(np.int64).min

    def __init__(self) -> None:
        self._last = np.full(0, self._UNKNOWN, dtype=np.int64)

    def fresh(
        self, series_ids: npt.NDArray[np.int32], buckets: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        last = np.full(len(series_ids), self._UNKNOWN, dtype=np.int64)
        known = series_ids < len(self._last)
        last[known] = self._last[series_ids[known]]
        fresh: npt.NDArray[np.bool_] = (last != self._UNKNOWN) & (buckets > last)
        return fresh

    def advance(self, series_ids: npt.NDArray[np.int32], buckets: npt.NDArray[np.int64]) -> None:
        if not len(series_ids):
            return
        top = int(series_ids.max()) + 1
        if top > len(self._last):
            grown = np.full(max(top, 2 * len(self._last)), self._UNKNOWN, dtype=np.int64)
            grown[: len(self._last)] = self._last
            self._last = grown
        np.maximum.at(self._last, series_ids, buckets)


def create_staging(conn: psycopg.Connection[TupleRow]) -> None:
    """The session's staging table (emptied at every commit)."""
    conn.execute(_CREATE_STAGING)


def _stage(
    cur: psycopg.Cursor[TupleRow], parts: list[Partials], codes: npt.NDArray[np.int16]
) -> None:
    """COPY partials into ``rollups_staging``, each row with its resolution code."""
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


def merge_partials(
    conn: psycopg.Connection[TupleRow],
    series_ids: npt.NDArray[np.int32],
    times_us: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    quality: npt.NDArray[np.int16],
    tz: str = DEFAULT_TZ,
    *,
    watermark: MinuteWatermark | None = None,
) -> int:
    """Merge these readings' partials (every resolution) into ``rollups``; call inside
    a transaction, with `create_staging` done on this connection.  With a
    ``watermark``, probably-new 1-minute buckets are inserted plainly (see
    `MinuteWatermark`).  Returns the number of partial rows merged."""
    parts = [partials(series_ids, times_us, values, quality, res, tz) for res in RESOLUTIONS]
    codes = np.concatenate([np.full(len(p), i, np.int16) for i, p in enumerate(parts)])
    if not len(codes):
        return 0
    minutes = parts[0]
    fresh = (
        watermark.fresh(minutes.series_id, minutes.bucket)
        if watermark is not None
        else np.zeros(len(minutes), dtype=bool)
    )
    codes[: len(minutes)][fresh] = FRESH_MINUTE
    with conn.cursor() as cur:
        _stage(cur, parts, codes)
        if fresh.any():
            try:
                with conn.transaction():  # a savepoint: a conflict undoes only this
                    cur.execute(_INSERT_FRESH_SQL)
                cur.execute(_MERGE_REST_SQL)
            except psycopg.errors.UniqueViolation:
                cur.execute(MERGE_SQL)
        else:
            cur.execute(MERGE_SQL)
        cur.execute(MARK_DAYS_SQL)
    if watermark is not None:
        watermark.advance(minutes.series_id, minutes.bucket)
    return len(codes)


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
    the minute and hour buckets of each reading's hour from its readings, and the
    day from its hours.  For readings whose flag changed after they were stored (a
    spike is only seen once the next reading arrives): a FAIL leaves the rollup, and
    min, max, first and last cannot be "un-merged", so the buckets are recomputed;
    an hour is small.  Call inside a transaction, with `create_staging` done.

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
        parts = [partials(*readings, res, tz) for res in ("1m", "1h")]
        codes = np.concatenate([np.full(len(p), i, np.int16) for i, p in enumerate(parts)])
        if len(codes):
            with conn.cursor() as cur:
                # the batch's own merge may have filled the staging table already
                cur.execute("DELETE FROM rollups_staging")
                _stage(cur, parts, codes)
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
