"""How much room the data takes, and how fast it grows (``smartby db size``).

Sizes per table (a hypertable with its chunks, indexes and TOAST) and per chunk;
the growth per year at the current ingest rate: the readings (and rollup rows) of the
last 7 days per day, times 365, times the bytes one row takes on disk now — measured
from the table itself, so it includes indexes, page overhead and, on the community
edition, whatever compression achieved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

#: the window the ingest rate is measured over
RATE_DAYS = 7


@dataclass(frozen=True, slots=True)
class TableSize:
    name: str
    total_bytes: int
    rows: int  # estimated from the planner's statistics, exact when it has none
    hypertable: bool = False


@dataclass(frozen=True, slots=True)
class ChunkSize:
    name: str
    start: datetime
    end: datetime
    total_bytes: int
    compressed: bool


@dataclass(slots=True)
class SizeReport:
    tables: list[TableSize] = field(default_factory=list)
    chunks: list[ChunkSize] = field(default_factory=list)
    readings_per_day: float = 0.0
    rollup_rows_per_day: float = 0.0

    def table(self, name: str) -> TableSize | None:
        return next((t for t in self.tables if t.name == name), None)

    def bytes_per_row(self, name: str) -> float | None:
        table = self.table(name)
        if table is None or table.rows <= 0:
            return None
        return table.total_bytes / table.rows

    @property
    def readings_growth_per_year(self) -> float | None:
        per_row = self.bytes_per_row("readings")
        return None if per_row is None else self.readings_per_day * 365 * per_row

    @property
    def rollups_growth_per_year(self) -> float | None:
        per_row = self.bytes_per_row("rollups")
        return None if per_row is None else self.rollup_rows_per_day * 365 * per_row


_TABLES = """
    SELECT c.relname,
           CASE WHEN h.hypertable_name IS NOT NULL
                THEN hypertable_size(c.oid::regclass)
                ELSE pg_total_relation_size(c.oid) END,
           h.hypertable_name IS NOT NULL
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN timescaledb_information.hypertables h
      ON h.hypertable_schema = n.nspname AND h.hypertable_name = c.relname
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
    ORDER BY 2 DESC, 1
"""

_PLAIN_TABLES = """
    SELECT c.relname, pg_total_relation_size(c.oid), false
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
    ORDER BY 2 DESC, 1
"""

_CHUNKS = """
    SELECT c.chunk_name, c.range_start, c.range_end, s.total_bytes, c.is_compressed
    FROM timescaledb_information.chunks c
    JOIN chunks_detailed_size('public.readings') s
      ON s.chunk_schema = c.chunk_schema AND s.chunk_name = c.chunk_name
    WHERE c.hypertable_schema = 'public' AND c.hypertable_name = 'readings'
    ORDER BY c.range_start
"""

# per series through the primary keys (series_id, time) and (series_id, resolution,
# bucket): no index on time alone is needed
_RECENT_READINGS = """
    SELECT coalesce(sum(n), 0) FROM series s CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM readings r
        WHERE r.series_id = s.id AND r.time >= now() - make_interval(days => %(days)s)
          AND r.time < now()) x
"""
_RECENT_ROLLUPS = """
    SELECT coalesce(sum(n), 0) FROM series s CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM rollups u
        WHERE u.series_id = s.id AND u.resolution = ANY('{1m,1h,1d}')
          AND u.bucket >= now() - make_interval(days => %(days)s) AND u.bucket < now()) x
"""


def _rows(conn: psycopg.Connection[TupleRow], name: str, hypertable: bool) -> int:
    """The planner's estimate (ANALYZE keeps it fresh); an exact count when it has none."""
    if hypertable:
        row = conn.execute("SELECT approximate_row_count(%s::regclass)", (name,)).fetchone()
    else:
        row = conn.execute(
            "SELECT reltuples::int8 FROM pg_class WHERE oid = %s::regclass", (name,)
        ).fetchone()
    estimate = int(row[0]) if row and row[0] is not None else -1
    if estimate > 0:
        return estimate
    counted = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))
    ).fetchone()
    return int(counted[0]) if counted else 0


def size_report(conn: psycopg.Connection[TupleRow]) -> SizeReport:
    has_timescale = conn.execute(
        "SELECT to_regclass('timescaledb_information.hypertables')"
    ).fetchone() != (None,)
    report = SizeReport()
    for name, total, hypertable in conn.execute(_TABLES if has_timescale else _PLAIN_TABLES):
        report.tables.append(
            TableSize(
                str(name),
                int(total or 0),
                _rows(conn, str(name), bool(hypertable)),
                bool(hypertable),
            )
        )
    if has_timescale and any(t.hypertable and t.name == "readings" for t in report.tables):
        report.chunks = [
            ChunkSize(str(n), start, end, int(total or 0), bool(compressed))
            for n, start, end, total, compressed in conn.execute(_CHUNKS)
        ]
    params = {"days": RATE_DAYS}
    readings = conn.execute(_RECENT_READINGS, params).fetchone()
    rollups = conn.execute(_RECENT_ROLLUPS, params).fetchone()
    report.readings_per_day = int(readings[0]) / RATE_DAYS if readings else 0.0
    report.rollup_rows_per_day = int(rollups[0]) / RATE_DAYS if rollups else 0.0
    return report


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def readings_chunk_spans(conn: psycopg.Connection[TupleRow]) -> npt.NDArray[np.int64] | None:
    """The time spans of the readings hypertable's chunks, as rows of (start, end)
    microseconds since the Unix epoch in ascending order; None when ``readings`` is a
    plain table (no TimescaleDB), whose inserts create nothing.  Ingest's writer splits
    a batch over two connections only where both insert into chunks that exist
    (`ingest.writer`: creating a chunk locks the hypertable until commit)."""
    if conn.execute("SELECT to_regclass('timescaledb_information.chunks')").fetchone() == (None,):
        return None
    rows = conn.execute(
        "SELECT (extract(epoch FROM range_start) * 1000000)::int8,"
        " (extract(epoch FROM range_end) * 1000000)::int8"
        " FROM timescaledb_information.chunks"
        " WHERE hypertable_schema = 'public' AND hypertable_name = 'readings'"
        " ORDER BY range_start"
    ).fetchall()
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)
