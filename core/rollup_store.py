"""Rollups in the database: merging partials in, and rebuilding a time range.

Both ingest (every batch, in the readings' transaction) and `smartby rollup rebuild`
(repair) go through `merge_partials`: partials are computed in NumPy
(`core.rollups`), COPYed in binary into a session-local staging table, and merged by
the upsert `core.rollups.MERGE_SQL` that mirrors `core.rollups.merge`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import LiteralString

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import TupleRow

from core.pgcopy import Column, encode_rows
from core.rollups import (
    DEFAULT_TZ,
    MERGE_SQL,
    RESOLUTIONS,
    ROLLUP_COLUMNS,
    bucket_starts,
    next_bucket_starts,
    partials,
)

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
#: (core.indicator_store); resolution code 2 is the day
MARK_DAYS_SQL: LiteralString = (
    "INSERT INTO indicator_days_pending (day)"
    " SELECT DISTINCT bucket FROM rollups_staging WHERE resolution_code = 2"
    " ON CONFLICT (day) DO NOTHING"
)


def create_staging(conn: psycopg.Connection[TupleRow]) -> None:
    """The session's staging table (emptied at every commit)."""
    conn.execute(_CREATE_STAGING)


def merge_partials(
    conn: psycopg.Connection[TupleRow],
    series_ids: npt.NDArray[np.int32],
    times_us: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    quality: npt.NDArray[np.int16],
    tz: str = DEFAULT_TZ,
) -> int:
    """Merge these readings' partials (every resolution) into ``rollups``; call inside
    a transaction, with `create_staging` done on this connection.  Returns the number
    of partial rows merged."""
    parts = [partials(series_ids, times_us, values, quality, res, tz) for res in RESOLUTIONS]
    codes = np.concatenate([np.full(len(p), i, np.int16) for i, p in enumerate(parts)])
    if not len(codes):
        return 0
    columns = [np.concatenate([p.columns()[name] for p in parts]) for name in ROLLUP_COLUMNS]
    data = encode_rows(STAGED_COLUMNS, [codes, *columns])
    with conn.cursor() as cur:
        with cur.copy(
            "COPY rollups_staging (resolution_code, series_id, bucket, count, good_count,"
            " sum, sum_sq, min, max, first_time, first_value, last_time, last_value)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.write(data)
        cur.execute(MERGE_SQL)
        cur.execute(MARK_DAYS_SQL)
    return len(codes)


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


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
    first = int(bucket_starts(np.array([_us(start)], np.int64), "1d", tz)[0])
    last_bucket = bucket_starts(np.array([_us(end) - 1], np.int64), "1d", tz)
    stop = int(next_bucket_starts(last_bucket, "1d", tz)[0])
    create_staging(conn)
    conn.commit()
    day = first
    total = 0
    while day < stop:
        next_day = int(next_bucket_starts(np.array([day], np.int64), "1d", tz)[0])
        lo = datetime.fromtimestamp(day / 1e6, UTC)
        hi = datetime.fromtimestamp(next_day / 1e6, UTC)
        with conn.transaction():
            conn.execute("DELETE FROM rollups WHERE bucket >= %s AND bucket < %s", (lo, hi))
            with conn.cursor(binary=True) as cur:
                rows = cur.execute(
                    "SELECT series_id, (extract(epoch FROM time) * 1000000)::int8, value,"
                    " quality FROM readings WHERE time >= %s AND time < %s",
                    (lo, hi),
                ).fetchall()
            if rows:
                columns = list(zip(*rows, strict=True))
                merge_partials(
                    conn,
                    np.asarray(columns[0], np.int32),
                    np.asarray(columns[1], np.int64),
                    np.asarray(columns[2], np.float64),
                    np.asarray(columns[3], np.int16),
                    tz,
                )
            total += len(rows)
        if progress is not None:
            progress(lo, hi)
        day = next_day
    return (
        datetime.fromtimestamp(first / 1e6, UTC),
        datetime.fromtimestamp(stop / 1e6, UTC),
        total,
    )
