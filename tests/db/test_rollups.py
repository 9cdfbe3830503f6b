"""`smartby rollup rebuild` recomputes damaged rollups from the readings, whole local
days at a time, DST day included, and they again equal a plain GROUP BY."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import psycopg

from db.pgcopy import Column, encode_rows
from db.rollups import MinuteWatermark, create_staging, merge_partials
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


def test_new_minutes_inserted_plainly_still_equal_group_by_also_when_the_hint_is_wrong(
    db_url: str, conn: psycopg.Connection
) -> None:
    """The watermark sends later minutes to a plain INSERT; when a "new" minute turns
    out to exist (another worker wrote it), the batch is merged as usual."""
    register(conn, "aq-1")
    series = conn.execute(
        "INSERT INTO series (device_id, metric) VALUES ('aq-1', 'pm25') RETURNING id"
    ).fetchone()[0]
    t0 = 1_790_000_040_000_000  # a whole minute
    mine, other = MinuteWatermark(), MinuteWatermark()

    def write(times_s: list[float], watermark: MinuteWatermark) -> None:
        t = np.array([t0 + int(x * 1e6) for x in times_s], np.int64)
        s = np.full(len(t), series, np.int32)
        v = np.arange(len(t), dtype=np.float64) + t0 % 7
        q = np.ones(len(t), np.int16)
        with psycopg.connect(db_url) as c:
            create_staging(c)
            with c.transaction():
                c.execute(
                    "INSERT INTO readings (time, series_id, value, quality)"
                    " SELECT to_timestamp(x / 1e6), %s, v, 1 FROM unnest(%s::int8[], %s::float8[])"
                    " AS u(x, v)",
                    (series, t.tolist(), v.tolist()),
                )
                merge_partials(c, s, t, v, q, watermark=watermark)

    write([0, 10], mine)  # unknown series: merged; the watermark learns minute 0
    write([60, 70, 130], mine)  # minutes 1 and 2 are new: inserted plainly
    write([140], other)  # another writer, unknown series: merged into minute 2
    write([150, 200], other)  # its hint says minute 3 is new, and it is
    write([175, 190], mine)  # minute 3 looks new to it, but other has it: merged after all
    assert_rollups_match_readings(conn)
    assert conn.execute(
        "SELECT count FROM rollups WHERE resolution = '1m' ORDER BY bucket"
    ).fetchall() == [(2,), (2,), (4,), (2,)]
