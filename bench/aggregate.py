"""Rollup throughput of the NumPy core against pandas and TimescaleDB, and its cost at ingest.

    .venv/bin/python bench/aggregate.py                  # 10 M readings, then ingest runs
    .venv/bin/python bench/aggregate.py --quick          # small sizes, under a minute
    .venv/bin/python bench/aggregate.py --skip-ingest    # only the first table

Readings (generated once, fixed seed): 1000 series at a one-minute cadence, each
device a few seconds off the minute, minute by minute as they arrive (so every series'
readings are in time order), centred on the night Europe/Oslo
falls back to winter time (2026-10-25, a 25-hour day); values with a daily cycle and
noise; a few per cent suspect (3) and failed (4) flags.

Table 1: the same readings rolled up into the same columns (count, good_count, sum,
sum_sq, min, max, first and last time and value) per series and 1-minute, 1-hour and
Europe/Oslo-day bucket, three ways —
  * the core: `core.rollups.partials` on the arrays;
  * pandas: a DataFrame built from the arrays, then ``groupby([series, bucket]).agg``,
    days by ``dt.tz_convert('Europe/Oslo').dt.normalize()``;
  * TimescaleDB: binary COPY into the ``readings`` hypertable plus ANALYZE (getting the
    data there), then ``time_bucket`` GROUP BY, the result streamed back by binary COPY
    into a NumPy record array.
The three results are compared row by row; a disagreement ends the run.

Table 2: what the core costs ingest.  `smartby ingest` end to end with bench.common's
stack, worker and publishers (10-record SenML packs, a reading per series per second),
with SMARTBY_INGEST_QC and SMARTBY_INGEST_ROLLUPS off and on: readings/s, and CPU
seconds per reading of the worker, PostgreSQL and Mosquitto (from /proc).  Then the
NumPy part alone, offline on the same readings in the worker's batch sizes; ingest's
write path alone (`ingest.writer.BatchWriter`) at a reading per series per second and
per minute, with rollups off, as before issue 17 (a 1-minute row upserted for every
reading: the baseline, in the same run; without the old writer's plain-insert hint for
new minutes), with hourly and daily rows only (issue 17's option (b): no 1-minute rows
at all), and as ingest stores them (option (a), taken: 1-minute rows only for series
reporting about twice a minute or more); the verdict on DESIGN.md's
budget: rollups keep up with ingest at no more than 10 % of its CPU at both rates;
and what the rollups of Narvik's catalogue take a year, before issue 17 (a 1-minute
row for every reading) and now, with the bytes of a row measured here.

The machine is shared and has two cores: every figure is the best of a few rounds, and
what carries over between machines is the ratios, measured in the same run.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # run as a file: import from the repository root (bench/ would shadow `ingest`)
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import psycopg
from psycopg import sql

from bench.common import (
    DEVICES,
    PACK_METRICS,
    Stack,
    Worker,
    best_of,
    cpu_snapshot,
    last_commit,
    pack_messages,
    publish_parallel,
    say,
    start_stack,
    stop_stack,
    tree_cpu,
    wait_until,
)
from core import qc
from core.rollups import (
    MINUTE_ROWS_SPACING_US,
    RESOLUTIONS,
    ROLLUP_COLUMNS,
    LatestTimes,
    Partials,
    Resolution,
    partials,
)
from db.pgcopy import HEADER, PG_EPOCH_OFFSET_US, TRAILER, encode_rows
from db.rollups import MinuteRows, merge_partials, partials_to_store
from ingest.pipeline import PreparedBatch
from ingest.writer import READING_COLUMNS, BatchWriter, NewRows

SERIES = 1000
SEED = 42
MINUTE_US = 60_000_000
TZ = "Europe/Oslo"
#: 2026-10-25 01:00 UTC: Europe/Oslo falls back from 03:00 CEST to 02:00 CET
DST_CHANGE_US = 1_792_890_000_000_000
COPY_CHUNK = 1_000_000  # readings encoded per write into the COPY stream
BUDGET_SHARE = 0.10  # DESIGN.md: rollups ≤ 10 % of ingest CPU


# ---------------------------------------------------------------------- the readings


@dataclass(frozen=True, slots=True)
class Readings:
    series_ids: npt.NDArray[np.int32]
    times_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int16]

    def __len__(self) -> int:
        return len(self.values)

    def window(self, lo: int, hi: int) -> Readings:
        return Readings(
            self.series_ids[lo:hi], self.times_us[lo:hi], self.values[lo:hi], self.quality[lo:hi]
        )

    def arrays(
        self,
    ) -> tuple[
        npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int16]
    ]:
        return self.series_ids, self.times_us, self.values, self.quality


def synthetic_readings(n: int, series: int = SERIES) -> Readings:
    """n readings of ``series`` series, one a minute each, minute by minute, centred on
    the autumn DST change; deterministic."""
    rng = np.random.default_rng(SEED)
    minutes = -(-n // series)
    start = DST_CHANGE_US - minutes // 2 * MINUTE_US
    skew = rng.integers(0, 60, series).astype(np.int64) * 1_000_000  # s off the minute
    level = rng.uniform(5.0, 50.0, series)
    series_ids = np.tile(np.arange(1, series + 1, dtype=np.int32), minutes)[:n]
    row_series = series_ids - 1
    times = np.repeat(start + np.arange(minutes, dtype=np.int64) * MINUTE_US, series)[:n]
    times += skew[row_series]
    daily = np.sin((times - start) * (2 * np.pi / (24 * 60 * MINUTE_US)))
    values = np.round(level[row_series] * (1 + 0.3 * daily) + rng.normal(0.0, 2.0, n), 1)
    quality = rng.choice(np.array([1, 2, 3, 4], np.int16), n, p=[0.93, 0.03, 0.03, 0.01])
    return Readings(series_ids, times, values, quality)


# ---------------------------------------------------------------------------- pandas


def pandas_frame(r: Readings) -> pd.DataFrame:
    """The readings as a DataFrame, with what every rollup needs computed once: the
    usable rows only (as `core.rollups.partials` counts them), good flags, squares."""
    frame = pd.DataFrame(
        {
            "series_id": r.series_ids,
            "time": pd.to_datetime(r.times_us, unit="us", utc=True),
            "value": r.values,
            "quality": r.quality,
        }
    )
    quality = frame["quality"]
    frame = frame.loc[(quality != qc.FAIL) & (quality != qc.MISSING) & frame["value"].notna()]
    return frame.assign(
        good=frame["quality"].isin([qc.GOOD, qc.NOT_EVALUATED]).astype(np.int64),
        value_sq=frame["value"] * frame["value"],
    )


_PANDAS_FREQ = {"1m": "min", "1h": "h"}


def pandas_rollup(frame: pd.DataFrame, res: Resolution) -> pd.DataFrame:
    """The rollup columns per (series_id, bucket).  "first" and "last" are positional
    in pandas: right here because every series' readings arrive in time order."""
    times = frame["time"]
    if res == "1d":
        bucket = times.dt.tz_convert(TZ).dt.normalize()
    else:
        bucket = times.dt.floor(_PANDAS_FREQ[res])
    return frame.groupby([frame["series_id"], bucket.rename("bucket")], sort=True).agg(
        count=("value", "size"),
        good_count=("good", "sum"),
        sum=("value", "sum"),
        sum_sq=("value_sq", "sum"),
        min=("value", "min"),
        max=("value", "max"),
        first_time=("time", "min"),
        first_value=("value", "first"),
        last_time=("time", "max"),
        last_value=("value", "last"),
    )


def _epoch_us(moments: Any) -> npt.NDArray[np.int64]:
    return np.asarray(pd.DatetimeIndex(moments).as_unit("us").asi8, dtype=np.int64)


def partials_from_pandas(res: Resolution, table: pd.DataFrame) -> Partials:
    index = table.index
    return Partials(
        resolution=res,
        series_id=index.get_level_values(0).to_numpy(np.int32),
        bucket=_epoch_us(index.get_level_values(1)),
        count=table["count"].to_numpy(np.int64),
        good_count=table["good_count"].to_numpy(np.int64),
        sum=table["sum"].to_numpy(np.float64),
        sum_sq=table["sum_sq"].to_numpy(np.float64),
        min=table["min"].to_numpy(np.float64),
        max=table["max"].to_numpy(np.float64),
        first_time=_epoch_us(table["first_time"]),
        first_value=table["first_value"].to_numpy(np.float64),
        last_time=_epoch_us(table["last_time"]),
        last_value=table["last_value"].to_numpy(np.float64),
    )


# ------------------------------------------------------------------------------- SQL


def copy_readings(url: str, r: Readings) -> None:
    """Binary COPY of every reading into the ``readings`` hypertable, one stream encoded
    a chunk at a time (as ingest encodes: `db.pgcopy`), then ANALYZE for the planner."""
    n = len(r)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY readings (time, series_id, value, quality) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            for lo in range(0, n, COPY_CHUNK):
                hi = min(lo + COPY_CHUNK, n)
                part = r.window(lo, hi)
                data = encode_rows(
                    READING_COLUMNS, [part.times_us, part.series_ids, part.values, part.quality]
                )
                # one stream: the header only before the first row, the trailer after the last
                start = len(HEADER) if lo else 0
                end = len(data) - len(TRAILER) if hi < n else len(data)
                copy.write(memoryview(data)[start:end])
                if hi < n and hi % (5 * COPY_CHUNK) == 0:
                    say(f"  COPY: {hi:,} of {n:,} readings sent")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE readings")


_ROLLUP_SQL = sql.SQL(
    """COPY (
        SELECT series_id, {bucket} AS bucket,
               count(*), count(*) FILTER (WHERE quality IN (1, 2)),
               sum(value), sum(value * value), min(value), max(value),
               min(time), first(value, time), max(time), last(value, time)
        FROM readings
        WHERE quality IN (1, 2, 3) AND value <> 'NaN'
        GROUP BY series_id, bucket
    ) TO STDOUT (FORMAT BINARY)"""
)
_BUCKET_SQL: dict[str, sql.Composable] = {
    "1m": sql.SQL("time_bucket('1 minute', time)"),
    "1h": sql.SQL("time_bucket('1 hour', time)"),
    "1d": sql.SQL("time_bucket('1 day', time, {})").format(sql.Literal(TZ)),
}
#: the query's output columns on the wire: binary COPY, fixed width, never NULL
_RESULT_FIELDS = (
    ("series_id", ">i4"),
    ("bucket", ">i8"),
    ("count", ">i8"),
    ("good_count", ">i8"),
    ("sum", ">f8"),
    ("sum_sq", ">f8"),
    ("min", ">f8"),
    ("max", ">f8"),
    ("first_time", ">i8"),
    ("first_value", ">f8"),
    ("last_time", ">i8"),
    ("last_value", ">f8"),
)
_RESULT_DTYPE = np.dtype(
    [("nfields", ">i2")]
    + [field for name, dtype in _RESULT_FIELDS for field in ((f"{name}_len", ">i4"), (name, dtype))]
)
_TIME_FIELDS = frozenset({"bucket", "first_time", "last_time"})


def sql_rollup(conn: psycopg.Connection[Any], res: Resolution) -> npt.NDArray[np.void]:
    """time_bucket GROUP BY in the database, the result as a (big-endian) record array."""
    received = bytearray()
    with conn.cursor() as cur, cur.copy(_ROLLUP_SQL.format(bucket=_BUCKET_SQL[res])) as copy:
        for chunk in copy:
            received += chunk
    # header: signature, flags, extension length (0 from PostgreSQL); then rows; trailer
    body = len(received) - len(HEADER) - len(TRAILER)
    if received[: len(HEADER)] != HEADER or body % _RESULT_DTYPE.itemsize:
        raise SystemExit(f"unexpected binary COPY output from the {res} query")
    return np.frombuffer(
        received, _RESULT_DTYPE, count=body // _RESULT_DTYPE.itemsize, offset=len(HEADER)
    )


def partials_from_sql(res: Resolution, records: npt.NDArray[np.void]) -> Partials:
    """Native arrays in (series, bucket) order, like the core's."""
    order = np.lexsort((records["bucket"], records["series_id"]))

    def column(name: str, dtype: type[np.generic]) -> npt.NDArray[Any]:
        values = records[name][order].astype(dtype)
        return values + PG_EPOCH_OFFSET_US if name in _TIME_FIELDS else values

    return Partials(
        res, **{name: column(name, np.dtype(dtype).type) for name, dtype in _RESULT_FIELDS}
    )


# ------------------------------------------------------------------------- agreement


def disagreement(expected: Partials, got: Partials) -> str | None:
    """None when two partial sets are the same (sums to 1e-9), else what differs."""
    if len(expected) != len(got):
        return f"{len(got):,} groups instead of {len(expected):,}"
    wrong = []
    for name in ROLLUP_COLUMNS:
        a, b = getattr(expected, name), getattr(got, name)
        if name in ("sum", "sum_sq"):
            same = np.allclose(a, b, rtol=1e-9, atol=1e-9)
        else:
            same = np.array_equal(a, b)
        if not same:
            wrong.append(name)
    return f"columns {', '.join(wrong)} differ" if wrong else None


def check(method: str, res: Resolution, expected: Partials, got: Partials) -> None:
    problem = disagreement(expected, got)
    if problem is not None:
        raise SystemExit(f"results disagree: {method} {res} against the core: {problem}")


# ---------------------------------------------------------------------- table 1


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    seconds: float
    core_seconds: float  # the core's time for the same work: the ratio's denominator


def rollup_table(n: int, rows: list[Row]) -> str:
    lines = [
        f"{'method':<50} {'seconds':>9} {'readings/s':>13} {'x core':>8}",
        "-" * 83,
    ]
    for row in rows:
        lines.append(
            f"{row.label:<50} {row.seconds:>9.2f} {n / row.seconds:>13,.0f}"
            f" {row.seconds / row.core_seconds:>7.1f}x"
        )
    return "\n".join(lines)


def compare_rollups(stack: Stack, r: Readings, rounds: int) -> tuple[list[Row], str]:
    n = len(r)
    label = {"1m": "1m", "1h": "1h", "1d": f"1d ({TZ} days)"}
    core: dict[Resolution, Partials] = {}
    core_s: dict[Resolution, float] = {}
    rows: list[Row] = []
    for res in RESOLUTIONS:
        say(f"core partials {res}")
        core_s[res], core[res] = best_of(rounds, partial(partials, *r.arrays(), res))
        rows.append(Row(f"core partials, {label[res]}", core_s[res], core_s[res]))
    core_all = sum(core_s.values())
    rows.append(Row("core, all three", core_all, core_all))

    say("pandas: DataFrame from the arrays")
    frame_s, frame = best_of(rounds, partial(pandas_frame, r))
    rows.append(Row("pandas: DataFrame from the arrays", frame_s, core_all))
    pandas_s: dict[Resolution, float] = {}
    for res in RESOLUTIONS:
        say(f"pandas groupby {res}")
        pandas_s[res], table = best_of(rounds, partial(pandas_rollup, frame, res))
        check("pandas", res, core[res], partials_from_pandas(res, table))
        del table
        rows.append(Row(f"pandas groupby, {label[res]}", pandas_s[res], core_s[res]))
    del frame
    pandas_all = sum(pandas_s.values())
    rows.append(Row("pandas, all three (DataFrame built)", pandas_all, core_all))
    rows.append(Row("pandas, all three incl. the DataFrame", pandas_all + frame_s, core_all))

    say(f"TimescaleDB: binary COPY of {n:,} readings into the readings hypertable")
    with psycopg.connect(stack.url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings, rollups")
    start = time.perf_counter()
    copy_readings(stack.url, r)
    load_s = time.perf_counter() - start
    rows.append(Row("TimescaleDB: binary COPY + ANALYZE", load_s, core_all))
    sql_s: dict[Resolution, float] = {}
    with psycopg.connect(stack.url, autocommit=True) as conn:
        conn.execute("SET work_mem = '256MB'")
        parallel = conn.execute("SHOW max_parallel_workers_per_gather").fetchone()
        for res in RESOLUTIONS:
            say(f"SQL time_bucket {res}")
            sql_s[res], records = best_of(rounds, partial(sql_rollup, conn, res))
            check("SQL", res, core[res], partials_from_sql(res, records))
            del records
            rows.append(Row(f"SQL time_bucket GROUP BY, {label[res]}", sql_s[res], core_s[res]))
    sql_all = sum(sql_s.values())
    rows.append(Row("SQL, all three (data already there)", sql_all, core_all))
    rows.append(Row("SQL, all three incl. getting the data there", sql_all + load_s, core_all))
    note = (
        "x core: this row's time over the core's for the same resolution (loading rows and"
        " totals: over the core's three).\npandas and SQL results compared with the core's row"
        " by row, every column, all three resolutions: results agree.\nSQL: PostgreSQL with"
        f" work_mem 256MB, up to {parallel[0] if parallel else '?'} parallel workers per query;"
        " the core and pandas use one core."
    )
    return rows, note


# ---------------------------------------------------------------------- table 2


@dataclass(frozen=True, slots=True)
class IngestSetting:
    label: str
    qc: bool
    rollups: bool


INGEST_SETTINGS = (
    IngestSetting("no QC, no rollups", qc=False, rollups=False),
    IngestSetting("QC, no rollups", qc=True, rollups=False),
    IngestSetting("QC + rollups", qc=True, rollups=True),
)


@dataclass(frozen=True, slots=True)
class IngestRun:
    readings: int
    rate: float  # readings/s, first publish → last commit
    worker_cpu: float  # CPU seconds while the readings went through
    postgres_cpu: float
    broker_cpu: float
    batches: float

    @property
    def total_cpu(self) -> float:
        return self.worker_cpu + self.postgres_cpu + self.broker_cpu


@contextmanager
def ingest_env(setting: IngestSetting) -> Iterator[None]:
    """The worker takes the caller's SMARTBY_INGEST_* variables (bench.common.Worker)."""
    wanted = {
        "SMARTBY_INGEST_QC": "true" if setting.qc else "false",
        "SMARTBY_INGEST_ROLLUPS": "true" if setting.rollups else "false",
    }
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ingest_once(stack: Stack, setting: IngestSetting, packs: int, publishers: int) -> IngestRun:
    """bench.ingest's packs scenario through one worker, with its CPU time measured."""
    with psycopg.connect(stack.url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings, rollups, indicator_days_pending")
    prefix = f"g{uuid.uuid4().hex[:6]}"
    messages = pack_messages(prefix, packs, time.time() - 3600)
    readings = packs * len(PACK_METRICS)
    with ingest_env(setting):
        worker = Worker(stack, prefix, f"bench-aggregate-{uuid.uuid4().hex[:6]}")
    try:
        before = cpu_snapshot(stack, worker)
        first = publish_parallel(stack.broker.port, messages, publishers)
        wait_until(
            lambda: worker.metric("smartby_ingest_readings_written_total") >= readings,
            600,
            f"{readings:,} readings committed",
        )
        after = cpu_snapshot(stack, worker)
        batches = worker.metric("smartby_ingest_batch_messages_count")
        with psycopg.connect(stack.url) as conn:
            last = last_commit(conn, "d%")
            row = conn.execute("SELECT count(*) FROM rollups").fetchone()
    finally:
        worker.stop()
    rollup_rows = row[0] if row else 0
    if bool(rollup_rows) != setting.rollups:
        raise SystemExit(f"{setting.label}: the worker wrote {rollup_rows:,} rollup rows")
    worker_cpu, postgres_cpu, broker_cpu = (b - a for a, b in zip(before, after, strict=True))
    run = IngestRun(
        readings, readings / (last - first), worker_cpu, postgres_cpu, broker_cpu, batches
    )
    say(
        f"  {setting.label}: {run.rate:,.0f} readings/s, CPU s worker {worker_cpu:.2f}"
        f" PostgreSQL {postgres_cpu:.2f} Mosquitto {broker_cpu:.2f}"
    )
    return run


def pack_readings(packs: int) -> tuple[Readings, qc.QcTable]:
    """What the worker stores of bench.common.pack_messages(prefix, packs, t0), as
    arrays (a series per device and metric, the record order of the messages, the QC
    flags), and the metrics' default QC thresholds per series."""
    i = np.arange(packs)
    k = len(PACK_METRICS)
    series_ids = ((i % DEVICES)[:, None] * k + np.arange(1, k + 1)).astype(np.int32).ravel()
    t0 = time.time() - 3600
    times = np.repeat(np.round((t0 + i / 100) * 1e6).astype(np.int64), k)
    values = np.empty((packs, k), np.float64)
    values[:, 0] = i % 80
    values[:, 1:] = 10.0 + np.arange(k - 1)
    table = qc.QcTable.build(
        {s: qc.DEFAULT_QC[PACK_METRICS[(s - 1) % k]] for s in range(1, DEVICES * k + 1)}
    )
    flat = values.ravel()
    quality = qc.evaluate(series_ids, times, flat, table)  # the flags the worker stores
    return Readings(series_ids, times, flat, quality), table


class _DiscardingCursor:
    """Stands in for a psycopg cursor: `merge_partials` runs its NumPy part in full
    and the staging COPY and upsert go nowhere."""

    def __enter__(self) -> _DiscardingCursor:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def copy(self, _statement: str) -> _DiscardingCursor:
        return self

    def write(self, _data: bytes) -> None:
        return None

    def execute(self, _statement: str) -> None:
        return None


class _DiscardingConnection:
    def cursor(self) -> _DiscardingCursor:
        return _DiscardingCursor()


def core_cpu(r: Readings, table: qc.QcTable | None, batch: int) -> tuple[float, float]:
    """CPU seconds of QC (`qc.evaluate_batch` with the tail, as the worker runs it) and
    of the rollups' worker side (`merge_partials`: the partials ingest stores and the
    staging rows, minus the database) over r in batches of ``batch`` readings.
    Without a QC table, only the rollups, on r's own flags."""
    conn: Any = _DiscardingConnection()
    qc_s = rollups_s = 0.0
    tail = None
    latest = LatestTimes()  # the writer's memory of each series' latest reading
    for lo in range(0, len(r), batch):
        s, t, v, q = r.window(lo, lo + batch).arrays()
        started = time.process_time()
        if table is not None:
            outcome = qc.evaluate_batch(s, t, v, table, tail)
            tail, q = outcome.tail, outcome.flags
        flagged = time.process_time()
        merge_partials(conn, s, t, v, q, latest=latest)
        rollups_s += time.process_time() - flagged
        qc_s += flagged - started
    return qc_s, rollups_s


class _MinuteRowsWriter(BatchWriter):
    """Ingest's writer storing 1-minute rows as ``minutes`` says (`db.rollups.MinuteRows`):
    "none" is issue 17's option (b), which drops the resolution from the table (every
    minute computed at read time); "every reading" how ingest stored them before."""

    def __init__(self, url: str, minutes: MinuteRows) -> None:
        super().__init__(url, "bench-aggregate", split=None)
        self.minute_rows: MinuteRows = minutes

    def _rollups(
        self, conn: psycopg.Connection[Any], rows: NewRows, *, mark_days: bool = True
    ) -> None:
        merge_partials(
            conn,
            rows.series_ids,
            rows.times_us,
            rows.values,
            rows.quality,
            latest=self.latest,
            minutes=self.minute_rows,
            mark_days=mark_days,
        )


#: what the write path is measured with: no rollups, the baseline before issue 17 (a
#: 1-minute row for every reading), option (b), and ingest as it is (option (a))
WRITE_SETTINGS: tuple[str, ...] = ("off", "before", "hours and days", "as ingest")
#: the 1-minute rows of each setting with rollups
_MINUTE_ROWS: dict[str, MinuteRows] = {
    "before": "every reading",
    "hours and days": "none",
    "as ingest": "often",
}


def write_path_cpu(stack: Stack, r: Readings, batch: int, setting: str) -> tuple[float, float]:
    """CPU seconds (this process, PostgreSQL) of ingest's write path, `BatchWriter`,
    storing r in batches: the broker and decoding left out, the data shape kept.  On
    one connection in every setting: ingest splits a large batch over two, which moves
    the work onto two PostgreSQL backends but does not change how much there is."""
    assert stack.cluster.proc is not None
    with psycopg.connect(stack.url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings, rollups, indicator_days_pending")
    if setting == "off":
        writer = BatchWriter(stack.url, "bench-aggregate", rollups=False, split=None)
    else:
        writer = _MinuteRowsWriter(stack.url, _MINUTE_ROWS[setting])
    writer.write(PreparedBatch())  # connect and create the staging tables first
    postmaster = stack.cluster.proc.pid
    process, postgres = time.process_time(), tree_cpu(postmaster)
    try:
        for lo in range(0, len(r), batch):
            s, t, v, q = r.window(lo, lo + batch).arrays()
            writer.write(PreparedBatch(times_us=t, series_ids=s, values=v, quality=q))
        return time.process_time() - process, tree_cpu(postmaster) - postgres
    finally:
        writer.close()


@dataclass(frozen=True, slots=True)
class WriteCost:
    cpu: dict[str, tuple[float, float]]  # setting -> (this process, PostgreSQL) seconds
    rows: dict[str, float]  # setting -> rollup rows merged per reading
    bytes_per_row: float  # of the rollups table with its key, as ingest left it
    bytes_per_reading: float  # of the readings hypertable with its key


def rollup_write_cost(stack: Stack, r: Readings, batch: int, rounds: int) -> WriteCost:
    """The write path's CPU (the best of ``rounds``) in each of `WRITE_SETTINGS`, the
    rollup rows merged per reading, and what a rollup row takes on disk."""
    writes: dict[str, list[tuple[float, float]]] = {k: [] for k in WRITE_SETTINGS}
    for round_ in range(rounds):
        order = WRITE_SETTINGS if round_ % 2 == 0 else tuple(reversed(WRITE_SETTINGS))
        for setting in order:
            writes[setting].append(write_path_cpu(stack, r, batch, setting))
    # the table as the last "as ingest" run left it, packed (upserts leave dead rows)
    write_path_cpu(stack, r, batch, "as ingest")
    with psycopg.connect(stack.url, autocommit=True) as conn:
        conn.execute("VACUUM FULL rollups")
        row = conn.execute(
            "SELECT pg_total_relation_size('rollups'), (SELECT count(*) FROM rollups),"
            " hypertable_size('readings'), (SELECT count(*) FROM readings)"
        ).fetchone()
    size, count, readings_size, readings_count = (int(x) for x in row) if row else (0, 0, 0, 0)
    latest = LatestTimes()
    rows = dict.fromkeys(WRITE_SETTINGS, 0.0)
    for lo in range(0, len(r), batch):
        arrays = r.window(lo, lo + batch).arrays()
        for setting, minutes in _MINUTE_ROWS.items():
            remembered = latest if setting == "as ingest" else None
            stored = partials_to_store(*arrays, latest=remembered, minutes=minutes)
            rows[setting] += sum(len(p) for p in stored)
    return WriteCost(
        {k: min(v, key=sum) for k, v in writes.items()},
        {k: v / len(r) for k, v in rows.items()},
        size / max(count, 1),
        readings_size / max(readings_count, 1),
    )


def narvik_rollup_rows(minute_rows_for_every_reading: bool) -> tuple[float, float, float]:
    """Rollup rows a year for Narvik's catalogue (devices/narvik.yaml): (1-minute, hourly
    and daily rows, readings).  Before issue 17 every reading of a series reporting once
    a minute or slower had a 1-minute row of its own; now only series reporting at
    least twice a minute (`core.rollups.MINUTE_ROWS_SPACING_US`) have minute rows."""
    from devices.catalogue import load_catalogue, narvik_catalogue_path

    year_s = 365.25 * 86_400
    minutes = other = readings = 0.0
    for device in load_catalogue(narvik_catalogue_path()).devices:
        interval = float(device.interval_s)
        for _ in device.metrics:
            per_year = year_s / interval
            readings += per_year
            # a series' minutes holding a reading, and its hours and days
            filled = min(per_year, year_s / 60)
            often = interval * 1e6 <= MINUTE_ROWS_SPACING_US
            minutes += filled if (often or minute_rows_for_every_reading) else 0.0
            other += min(per_year, year_s / 3600) + min(per_year, 365.25)
    return minutes, other, readings


def ingest_cost(
    stack: Stack,
    synthetic: Readings,
    packs: int,
    publishers: int,
    rounds: int,
    *,
    judge: bool = True,
) -> str:
    readings = packs * len(PACK_METRICS)
    # a first run creates the series and warms PostgreSQL and the broker; not counted
    warm_up = max(1, min(packs, 20_000))
    say(f"ingest warm-up: {warm_up * len(PACK_METRICS):,} readings")
    ingest_once(stack, INGEST_SETTINGS[-1], warm_up, publishers)
    runs: dict[str, list[IngestRun]] = {s.label: [] for s in INGEST_SETTINGS}
    for round_ in range(rounds):
        # alternate the order: a drifting background load then favours no setting
        order = INGEST_SETTINGS if round_ % 2 == 0 else tuple(reversed(INGEST_SETTINGS))
        for setting in order:
            say(f"ingest round {round_ + 1}/{rounds}: {setting.label}, {readings:,} readings")
            runs[setting.label].append(ingest_once(stack, setting, packs, publishers))

    def best_rate(label: str) -> float:
        return max(run.rate for run in runs[label])

    def best_cpu(label: str) -> IngestRun:  # the least disturbed run
        return min(runs[label], key=lambda run: run.total_cpu)

    us = 1e6 / readings
    lines = [
        f"{'setting':<22} {'readings/s':>12}   CPU µs per reading:"
        f" {'worker':>7} {'PostgreSQL':>11} {'Mosquitto':>10} {'total':>7}",
        "-" * 96,
    ]
    for s in INGEST_SETTINGS:
        cpu = best_cpu(s.label)
        lines.append(
            f"{s.label:<22} {best_rate(s.label):>12,.0f}   {'':19}"
            f" {cpu.worker_cpu * us:>7.2f} {cpu.postgres_cpu * us:>11.2f}"
            f" {cpu.broker_cpu * us:>10.2f} {cpu.total_cpu * us:>7.2f}"
        )
    none, qc_only, both = (s.label for s in INGEST_SETTINGS)
    full = best_cpu(both)

    def cost(label: str, against: str) -> tuple[float, float, float, float]:
        """(rate change, added total CPU per reading µs, share of ingest CPU, of the worker's)"""
        base = best_cpu(against)
        added = full.total_cpu - base.total_cpu
        return (
            best_rate(label) / best_rate(against) - 1,
            added * us,
            added / full.total_cpu,
            (full.worker_cpu - base.worker_cpu) / full.worker_cpu,
        )

    spread = max(
        max(run.total_cpu for run in runs[s.label]) / best_cpu(s.label).total_cpu - 1
        for s in INGEST_SETTINGS
    )
    lines.append("")
    for what, against in (("QC + rollups", none), ("rollups alone", qc_only)):
        change, added, share, worker_share = cost(both, against)
        lines.append(
            f"end to end, {what + ':':<14} ingest rate {change:+.1%}, CPU {added:+.2f} µs/reading"
            f" = {share:.1%} of ingest CPU ({worker_share:.1%} of the worker's)"
        )
    if rounds > 1:
        lines.append(
            f"  (runs of one setting differ by up to {spread:.0%} in total CPU on this shared"
            " machine; the write path below measures the rollups more steadily)"
        )

    # the NumPy part alone, offline: the same readings in the worker's batch sizes
    batch = max(len(PACK_METRICS), round(readings / max(full.batches, 1)))
    pack_r, table = pack_readings(packs)
    offline = [core_cpu(pack_r, table, batch) for _ in range(3)]
    qc_s = min(qc_s for qc_s, _ in offline)
    rollups_s = min(rollups_s for _, rollups_s in offline)
    lines.append(
        f"NumPy alone, offline, the same readings in the worker's batches ({batch:,} readings):"
        f" QC {qc_s * us:.2f} µs/reading, rollups {rollups_s * us:.2f} µs/reading"
        f" = {rollups_s / full.total_cpu:.1%} of ingest CPU"
        f" ({rollups_s / full.worker_cpu:.1%} of the worker's)"
    )
    say(f"rollups' NumPy part on the {len(synthetic):,} minute readings, batches of {batch:,}")
    _, minute_s = core_cpu(synthetic, None, batch)
    keep_up = len(synthetic) / minute_s
    ingest_rate = best_rate(both)
    lines.append(
        f"NumPy alone on the {len(synthetic):,} minute readings, batches of {batch:,}:"
        f" {keep_up:,.0f} readings/s on one core = {keep_up / ingest_rate:.0f}x the ingest rate"
    )

    # rollups on ingest's write path, for the benchmark's readings and for minute data
    # (where, before issue 17, every reading opened a 1-minute rollup row of its own)
    base = best_cpu(qc_only).total_cpu * us  # ingest CPU per reading without rollups
    lines.append(
        f"rollups on ingest's write path alone (BatchWriter, no broker, batches of {batch:,}):"
        " CPU µs per reading of this process and PostgreSQL, what rollups add to it, and"
        " that as a share of ingest CPU (end to end with QC, plus the addition)"
    )
    labels = {
        "off": "rollups off",
        "before": "before issue 17: a 1m row per reading (baseline)",
        "hours and days": "hours and days only (option b)",
        "as ingest": "as ingest stores them (option a, taken)",
    }
    shares: dict[str, float] = {}
    shapes = (
        ("a reading per series per second", pack_r),
        ("a reading per series per minute", synthetic.window(0, readings)),
    )
    sizes: list[tuple[float, float]] = []
    for name, shape in shapes:
        say(f"write path, {name}: " + ", ".join(WRITE_SETTINGS))
        cost = rollup_write_cost(stack, shape, batch, rounds)
        sizes.append((cost.bytes_per_row, cost.bytes_per_reading))
        per = 1e6 / len(shape)
        off = sum(cost.cpu["off"])
        lines.append(f"  {name} ({len(shape):,} readings):")
        lines.append(
            f"    {'setting':<50} {'process':>8} {'PostgreSQL':>10} {'added':>7}"
            f" {'share':>6} {'rows/reading':>12}"
        )
        added: dict[str, float] = {}
        for setting in WRITE_SETTINGS:
            proc, pg = cost.cpu[setting]
            added[setting] = (proc + pg - off) * per
            share = added[setting] / (base + added[setting])
            shares[f"{name}, {setting}"] = share
            cells = (
                f"{'':>7} {'':>6}" if setting == "off" else f"{added[setting]:>+7.2f} {share:>6.1%}"
            )
            lines.append(
                f"    {labels[setting]:<50} {proc * per:>8.2f} {pg * per:>10.2f} {cells}"
                f" {cost.rows[setting]:>12.3f}"
            )
        ratio = added["as ingest"] / added["before"] if added["before"] > 0 else float("nan")
        lines.append(
            f"    option a / baseline: {ratio:.2f}x the added CPU, share"
            f" {shares[f'{name}, before']:.1%} -> {shares[f'{name}, as ingest']:.1%}"
        )
    at_load = shares[f"{shapes[0][0]}, as ingest"]
    at_minute = shares[f"{shapes[1][0]}, as ingest"]
    budget = f'budget "rollups keep up with ingest, <= {BUDGET_SHARE:.0%} of ingest CPU":'
    if judge:
        verdict = "MET" if at_load <= BUDGET_SHARE and keep_up >= ingest_rate else "MISSED"
        lines.append(
            f"{budget} {verdict} at a reading per series per second (rollups {at_load:.1%} of"
            f" ingest CPU, their NumPy part {rollups_s / full.total_cpu:.1%}, and it runs"
            f" {keep_up / ingest_rate:.0f}x faster than ingest);"
            f" {'MET' if at_minute <= BUDGET_SHARE else 'MISSED'} at a reading per series per"
            f" minute ({at_minute:.1%}: hourly and daily rows only; the baseline"
            f" {shares[f'{shapes[1][0]}, before']:.1%})"
        )
    else:
        lines.append(f"{budget} not judged at smoke-test sizes (--quick)")
    # what the rollups of Narvik's catalogue take a year, before and after issue 17
    before_minutes, other, readings_a_year = narvik_rollup_rows(True)
    after_minutes, _, _ = narvik_rollup_rows(False)
    row_bytes, reading_bytes = sizes[0]  # measured on the larger tables
    before, after = before_minutes + other, after_minutes + other
    lines.append(
        f"storage a year for Narvik's catalogue, {row_bytes:.0f} bytes a rollup row and"
        f" {reading_bytes:.0f} a reading (with their keys, measured here): readings"
        f" {readings_a_year / 1e6:.1f} M = {readings_a_year * reading_bytes / 1e9:.2f} GB"
        f" (kept for the raw retention); rollups (kept for ever) before"
        f" {before / 1e6:.2f} M rows = {before * row_bytes / 1e9:.2f} GB, of which 1-minute"
        f" {before_minutes / 1e6:.2f} M; now {after / 1e6:.2f} M rows ="
        f" {after * row_bytes / 1e9:.2f} GB, of which 1-minute {after_minutes / 1e6:.2f} M"
    )
    lines.append(
        "ingest CPU = the worker + PostgreSQL (all its processes) + Mosquitto per reading"
        f" committed, end to end ({base:.2f} µs/reading with QC, without rollups), plus the"
        f" rollups' cost; {readings:,} readings per run, {publishers} publisher processes,"
        f" best of {rounds} runs per setting"
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--readings", type=int, help="readings to roll up (default 10,000,000)")
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--skip-ingest", action="store_true", help="only the rollup table")
    parser.add_argument("--rounds", type=int, help="best of this many (default 2, quick 1)")
    parser.add_argument("--ingest-readings", type=int, help="per ingest run (default 1,000,000)")
    parser.add_argument(
        "--ingest-rounds", type=int, help="runs per ingest setting (default 3, quick 1)"
    )
    parser.add_argument("--publishers", type=int, default=2)
    args = parser.parse_args()
    n = args.readings or (300_000 if args.quick else 10_000_000)
    rounds = args.rounds or (1 if args.quick else 2)
    ingest_readings = args.ingest_readings or (30_000 if args.quick else 1_000_000)
    ingest_rounds = args.ingest_rounds or (1 if args.quick else 3)
    packs = max(1, ingest_readings // len(PACK_METRICS))

    say(f"generating {n:,} readings")
    r = synthetic_readings(n)
    say("starting PostgreSQL + TimescaleDB and Mosquitto")
    stack = start_stack()
    try:
        with psycopg.connect(stack.url) as conn:
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
        if row is None:
            raise SystemExit("TimescaleDB is not installed for this PostgreSQL: run scripts/setup")
        rows, note = compare_rollups(stack, r, rounds)
        cost = None
        if not args.skip_ingest:
            cost = ingest_cost(
                stack, r, packs, args.publishers, ingest_rounds, judge=not args.quick
            )
    finally:
        stop_stack(stack)

    first, last = (
        pd.Timestamp(int(x), unit="us", tz=TZ).strftime("%Y-%m-%d %H:%M")
        for x in (r.times_us.min(), r.times_us.max())
    )
    print(
        f"Rollups of {n:,} readings ({SERIES} series, one a minute, {first} to {last}"
        f" {TZ}, across the autumn DST change), best of {rounds}"
    )
    print(rollup_table(n, rows))
    print(note)
    print(f"TimescaleDB {row[0]}; machine: {os.cpu_count()} cores")
    if cost is not None:
        print()
        print("What the core costs ingest: 10-record SenML packs, one `smartby ingest` worker")
        print(cost)


if __name__ == "__main__":
    main()
