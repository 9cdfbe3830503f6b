"""`smartby rollup rebuild` recomputes damaged rollups from the readings, whole local
days at a time, DST day included, and they again equal a plain GROUP BY."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import psycopg

from core.pgcopy import Column, encode_rows
from core.rollup_store import create_staging, merge_partials
from tests.fixtures.ingest import register
from tests.fixtures.rollups import assert_rollups_match_readings

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
