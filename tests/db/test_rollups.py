"""`smartby rollup rebuild` recomputes damaged rollups from the readings, whole local
days at a time, DST day included, and they again equal a plain GROUP BY."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from core.rollups import LatestTimes
from db.pgcopy import Column, encode_rows
from db.rollups import create_staging, merge_partials
from tests.fixtures.ingest import register
from tests.fixtures.rollups import assert_rollups_match_readings, minute_rows

# the autumn DST change in Europe/Oslo: a 25-hour local day
DST_DAY = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # local midnight of 25 October


def rebuild_cli(db_url: str, start: str, end: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env["SMARTBY_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "smartby", "rollup", "rebuild", "--from", start, "--to", end],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_readings(conn: psycopg.Connection) -> None:
    register(conn, "aq-1")
    for metric in ("pm25", "no2"):
        conn.execute("INSERT INTO series (device_id, metric) VALUES ('aq-1', %s)", (metric,))
    rng = np.random.default_rng(7)
    n = 6000
    start = int(DST_DAY.timestamp() * 1e6) - 6 * 3600 * 10**6
    times = start + np.arange(n, dtype=np.int64) * 30 * 10**6  # 50 hours at 30 s
    series = np.where(np.arange(n) % 2 == 0, 1, 2).astype(np.int32)
    values = rng.gamma(2.0, 5.0, n)
    quality = np.where(rng.random(n) < 0.02, 4, np.where(rng.random(n) < 0.05, 3, 1))
    data = encode_rows(
        (
            Column("time", "timestamptz"),
            Column("series_id", "int4"),
            Column("value", "float8"),
            Column("quality", "int2"),
        ),
        [times, series, values, quality.astype(np.int16)],
    )
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY readings (time, series_id, value, quality) FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.write(data)
    with conn.transaction():
        create_staging(conn)
        merge_partials(conn, series, times, values, quality.astype(np.int16))


def test_merge_partials_equals_group_by(conn: psycopg.Connection) -> None:
    load_readings(conn)
    assert_rollups_match_readings(conn)
    days = conn.execute(
        "SELECT bucket, count FROM rollups WHERE resolution = '1d' AND series_id = 1"
        " ORDER BY bucket"
    ).fetchall()
    assert DST_DAY in [bucket for bucket, _ in days]


def test_rebuild_repairs_damaged_rollups(db_url: str, conn: psycopg.Connection) -> None:
    load_readings(conn)
    conn.execute("DELETE FROM rollups WHERE resolution = '1m' AND series_id = 1")
    conn.execute("UPDATE rollups SET count = count + 5, sum = -1 WHERE resolution = '1d'")
    conn.execute("UPDATE rollups SET max = 1e9 WHERE resolution = '1h'")
    result = rebuild_cli(db_url, "2026-10-24T12:00:00+02:00", "2026-10-26T03:00:00+01:00")
    assert result.returncode == 0, result.stderr
    assert "rebuilt 2026-10-23T22:00:00+00:00 .. 2026-10-26T23:00:00+00:00" in result.stdout
    assert_rollups_match_readings(conn)


def test_rebuild_refuses_an_empty_range(db_url: str) -> None:
    result = rebuild_cli(db_url, "2026-10-25T00:00:00+02:00", "2026-10-24T00:00:00+02:00")
    assert result.returncode == 1
    assert result.stderr.startswith("smartby: error: --to 2026-10-24T00:00:00+02:00 is not after")


def _series(conn: psycopg.Connection, device: str, metric: str = "pm25") -> int:
    register(conn, device)
    row = conn.execute(
        "INSERT INTO series (device_id, metric) VALUES (%s, %s) RETURNING id", (device, metric)
    ).fetchone()
    assert row is not None
    return int(row[0])


def _write(
    db_url: str,
    series: int,
    times_s: list[float],
    latest: LatestTimes | None = None,
    *,
    quality: int = 1,
) -> None:
    """Store readings of one series at T0 + times_s and merge their rollups, in one
    transaction, as a writer with the memory ``latest`` would."""
    t = np.array([T0 + round(x * 1e6) for x in times_s], np.int64)
    s = np.full(len(t), series, np.int32)
    v = (np.arange(len(t), dtype=np.float64) * 7) % 23 + series
    q = np.full(len(t), quality, np.int16)
    with psycopg.connect(db_url) as c:
        create_staging(c)
        with c.transaction():
            c.execute(
                "INSERT INTO readings (time, series_id, value, quality)"
                " SELECT 'epoch'::timestamptz + x * interval '1 microsecond', %s, v, %s"
                " FROM unnest(%s::int8[], %s::float8[]) AS u(x, v)",
                (series, quality, t.tolist(), v.tolist()),
            )
            merge_partials(c, s, t, v, q, latest=latest)


T0 = 1_790_000_040_000_000  # 2026-09-21 14:14 UTC, a whole minute


def test_a_series_reporting_once_a_minute_has_no_minute_rows_yet_its_minutes_are_exact(
    db_url: str, conn: psycopg.Connection
) -> None:
    """Each reading is its own minute: nothing is stored for it beyond the hour and
    the day, and the readers compute its minutes from the readings."""
    series = _series(conn, "aq-1")
    latest = LatestTimes()
    for batch in range(4):  # an hour of readings a minute apart, with jitter, in 4 batches
        _write(
            db_url,
            series,
            [60.0 * i + (i % 3) * 4 for i in range(15 * batch, 15 * batch + 15)],
            latest,
        )
    assert minute_rows(conn) == 0
    assert conn.execute("SELECT count(*) FROM rollups WHERE resolution = '1h'").fetchone()[0] == 2
    assert_rollups_match_readings(conn)


def test_a_series_reporting_every_second_has_minute_rows_for_whole_hours(
    db_url: str, conn: psycopg.Connection
) -> None:
    """Once the writer knows the series, one reading a batch is enough to tell it
    reports often; every minute it touches gets a row, and the rows add up to the
    hour."""
    series = _series(conn, "em-1", "power")
    latest = LatestTimes()
    _write(db_url, series, [float(x) for x in range(0, 10)], latest)  # 10 a batch
    for x in range(10, 200):
        _write(db_url, series, [float(x)], latest)  # then one a batch
    assert minute_rows(conn) == 4  # minutes 0-59, 60-119, 120-179, 180-199 s
    counts = conn.execute(
        "SELECT (SELECT sum(count) FROM rollups WHERE resolution = '1m'),"
        " (SELECT sum(count) FROM rollups WHERE resolution = '1h')"
    ).fetchone()
    assert counts == (200, 200)
    assert_rollups_match_readings(conn)


def test_minutes_are_exact_whatever_the_writer_chose_to_store(
    db_url: str, conn: psycopg.Connection
) -> None:
    """A writer that did not know the series skipped its first reading; another wrote
    rows for a minute whose earlier reading it never saw; a row is lost.  An hour whose
    minute rows do not count all of its readings is computed from the readings, so
    every minute still equals the GROUP BY."""
    fast = _series(conn, "em-1", "power")
    _write(db_url, fast, [0.0])  # alone in its batch, unknown series: no minute row
    _write(db_url, fast, [1.0, 2.0, 3.0])  # often: a minute row without the first reading
    other = LatestTimes()
    _write(db_url, fast, [4000.0, 4001.0], other)  # next hour: whole so far
    _write(db_url, fast, [4002.0], other)
    assert minute_rows(conn) == 2
    assert_rollups_match_readings(conn)
    conn.execute(
        "DELETE FROM rollups WHERE resolution = '1m' AND bucket > %s",
        (datetime.fromtimestamp(T0 / 1e6 + 3600, UTC),),
    )
    assert_rollups_match_readings(conn)
    # a failed reading is in no minute, stored or computed
    _write(db_url, fast, [4003.0], other, quality=4)
    assert_rollups_match_readings(conn)


def test_rebuild_keeps_minute_rows_for_the_series_that_report_often(
    db_url: str, conn: psycopg.Connection
) -> None:
    slow, fast = _series(conn, "aq-1"), _series(conn, "em-1", "power")
    _write(db_url, slow, [60.0 * i for i in range(30)])
    _write(db_url, fast, [10.0 * i for i in range(180)])
    conn.execute("UPDATE rollups SET count = count + 1")
    start = datetime.fromtimestamp(T0 / 1e6, UTC)
    result = rebuild_cli(db_url, start.isoformat(), (start + timedelta(hours=1)).isoformat())
    assert result.returncode == 0, result.stderr
    assert conn.execute(
        "SELECT DISTINCT series_id FROM rollups WHERE resolution = '1m'"
    ).fetchall() == [(fast,)]
    assert_rollups_match_readings(conn)


def test_the_next_batch_updates_the_rows_of_the_last_in_place(conn: psycopg.Connection) -> None:
    """The minutes, hours and days a batch merges into were, mostly, created by the
    batch before it, on pages they fill together: there is room on those pages for
    their next versions (migration 0017), so the upsert updates them in place (HOT,
    no new index entry) instead of moving them to a new page."""
    series = np.array([_series(conn, f"em-{i}", "power") for i in range(60)], np.int32)
    conn.commit()

    def batch(second: int) -> None:
        # 60 series reporting every second, 20 s of them: 1,200 readings
        t = np.repeat(T0 + np.arange(second, second + 20, dtype=np.int64) * 10**6, len(series))
        s = np.tile(series, 20)
        merge_partials(
            conn, s, t, np.ones(len(t)), np.ones(len(t), np.int16), latest=latest, mark_days=False
        )

    latest = LatestTimes()
    create_staging(conn)
    with conn.transaction():
        batch(0)  # creates a minute, an hour and a day row per series
    with conn.transaction():
        batch(20)  # the same minute, hour and day again
        updated, hot = conn.execute(
            "SELECT pg_stat_get_xact_tuples_updated('rollups'::regclass),"
            " pg_stat_get_xact_tuples_hot_updated('rollups'::regclass)"
        ).fetchone() or (0, 0)
    assert updated == 3 * len(series)
    assert hot == updated
