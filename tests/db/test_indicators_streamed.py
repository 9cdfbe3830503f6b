"""The indicator job streams a day in chunks (issue 11): the tables do not depend on
the chunk size, and a day of 1.5 M readings at one site stays within 300 MB."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from bench.common import load_busy_day, measure_process
from core.rollups import epoch_us, from_epoch_us, local_days
from core.settings import Settings
from db.indicators import DayUpdate, update_day
from db.pgcopy import Column, encode_rows
from tests.fixtures.ingest import register
from tests.fixtures.simulated import SimulatedData

#: the local day under test, and the readings just outside it that bound its intervals
DAY = datetime(2026, 11, 10, tzinfo=ZoneInfo("Europe/Oslo"))
LO, HI = epoch_us(DAY), epoch_us(DAY + timedelta(days=1))
MINUTE = 60_000_000

STREAMED_TABLES = {
    "energy_hourly": "site_id, hour, kwh, co2e_kg, coverage",
    "energy_daily": "site_id, day, day_start, kwh, co2e_kg, coverage",
    "traffic_hourly": "device_id, hour, volume, heavy_volume, mean_speed_kmh, heavy_share,"
    " coverage",
    "traffic_daily": "device_id, day, volume, heavy_volume, mean_speed_kmh, heavy_share, coverage",
}

_READINGS = (
    Column("time", "timestamptz"),
    Column("series_id", "int4"),
    Column("value", "float8"),
    Column("quality", "int2"),
)


def _series(conn: psycopg.Connection, device: str, metric: str) -> int:
    row = conn.execute(
        "INSERT INTO series (device_id, metric) VALUES (%s, %s) RETURNING id", (device, metric)
    ).fetchone()
    assert row is not None
    return int(row[0])


def _copy(conn: psycopg.Connection, series: int, times_us: np.ndarray, values: np.ndarray) -> None:
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY readings (time, series_id, value, quality) FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        n = len(times_us)
        copy.write(
            encode_rows(_READINGS, [times_us, np.full(n, series), values, np.full(n, 1, np.int16)])
        )


def _tables(conn: psycopg.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: conn.execute(f"SELECT {columns} FROM {table} ORDER BY 1, 2").fetchall()
        for table, columns in STREAMED_TABLES.items()
    }


def _assert_same_tables(
    got: dict[str, list[tuple[object, ...]]], want: dict[str, list[tuple[object, ...]]]
) -> None:
    """Same rows and keys; sums may differ in the last bits (they are added up in
    another order), nothing more."""
    for table, rows in want.items():
        assert len(got[table]) == len(rows), table
        for mine, theirs in zip(got[table], rows, strict=True):
            assert len(mine) == len(theirs)
            for a, b in zip(mine, theirs, strict=True):
                if isinstance(b, float):
                    assert a == pytest.approx(b, rel=1e-12, abs=1e-12), (table, mine, theirs)
                else:
                    assert a == b, (table, mine, theirs)


def _recompute(
    conn: psycopg.Connection, settings: Settings, day: datetime, chunk_rows: int
) -> tuple[DayUpdate, dict[str, list[tuple[object, ...]]]]:
    with conn.transaction():
        update = update_day(conn, day, settings, chunk_rows=chunk_rows)
    return update, _tables(conn)


def _meters_and_counters(conn: psycopg.Connection) -> None:
    """A day of energy meters and traffic counters with the awkward cases: a register
    reset, readings just before and after the day, a power meter's gap, counts with
    missing heavy counts and speeds, and a counter whose interval does not divide
    the hour."""
    rng = np.random.default_rng(3)
    minutes = LO - 30 * MINUTE + np.arange(24 * 60 + 61) * MINUTE  # 30 min either side
    # a register reset at 14:00: it restarts from 0, and counts on
    register(conn, "em-reg", kind="energy")
    k = np.arange(len(minutes))
    reset = int(np.searchsorted(minutes, LO + 14 * 60 * MINUTE))
    kwh = np.where(k < reset, 100.0 + 0.05 * k, 0.05 * (k - reset + 1))
    _copy(conn, _series(conn, "em-reg", "energy"), minutes, kwh)
    _copy(conn, _series(conn, "em-reg", "power"), minutes, np.full(len(minutes), 3000.0))
    # two power meters in one building, every 20 s; the second silent for 40 minutes
    register(conn, "em-p1", kind="energy")
    conn.execute("INSERT INTO devices (id, site_id, kind) VALUES ('em-p2', 'site-em-p1', 'energy')")
    for device, watts in (("em-p1", 3600.0), ("em-p2", 6000.0)):
        t = LO - 10 * MINUTE + np.arange(3 * (24 * 60 + 20)) * 20_000_000
        if device == "em-p2":
            t = t[(t < LO + 600 * MINUTE) | (t >= LO + 640 * MINUTE)]
        _copy(conn, _series(conn, device, "power"), t, watts + rng.normal(0, 50, len(t)))
    # counters: every 5 min, every minute, and every 7 minutes (no interval to use)
    for device, step in (("tc-5", 5), ("tc-1", 1), ("tc-7", 7)):
        register(conn, device, kind="traffic")
        t = LO + np.arange(0, 24 * 60, step) * MINUTE
        if device == "tc-1":
            t = np.delete(t, [3, 4, 100, 700])  # some intervals not reported
        vehicles = rng.poisson(8 * step, len(t)).astype(float)
        vehicles[::13] = 0.0
        heavy = np.minimum(vehicles, rng.poisson(step, len(t)))
        speed = rng.normal(55.0, 8.0, len(t))
        _copy(conn, _series(conn, device, "vehicle_count"), t, vehicles)
        keep = np.arange(len(t)) % 7 != 3  # heavy counts missing now and then
        _copy(conn, _series(conn, device, "heavy_vehicle_count"), t[keep], heavy[keep])
        keep = np.arange(len(t)) % 11 != 5  # speeds too
        _copy(conn, _series(conn, device, "speed"), t[keep], speed[keep])


@pytest.mark.parametrize("chunk_rows", [1, 7, 500])
def test_a_day_streamed_in_small_chunks_equals_it_read_whole(
    conn: psycopg.Connection, settings: Settings, chunk_rows: int
) -> None:
    _meters_and_counters(conn)
    whole_update, whole = _recompute(conn, settings, DAY, 10**9)
    # what is compared is not empty: both buildings, the two counters with an interval
    assert [r[0] for r in whole["energy_daily"]] == ["site-em-p1", "site-em-reg"]
    assert whole["energy_daily"][1][3] == pytest.approx(72.0)  # 0.05 kWh a minute, reset or not
    assert len(whole["energy_hourly"]) == 48
    assert [r[0] for r in whole["traffic_daily"]] == ["tc-1", "tc-5"]
    assert len(whole["traffic_hourly"]) == 48
    assert whole_update.skipped == ["tc-7"]
    # the day holds thousands of readings a series: chunks split hours and intervals
    streamed_update, streamed = _recompute(conn, settings, DAY, chunk_rows)
    _assert_same_tables(streamed, whole)
    assert streamed_update == DayUpdate(
        DAY,
        aqi_rows=0,
        energy_hours=48,
        energy_days=2,
        traffic_hours=48,
        traffic_days=2,
        skipped=["tc-7"],
    )


def test_the_simulated_city_streamed_in_small_chunks_gives_the_same_tables(
    simulated: SimulatedData, settings: Settings
) -> None:
    """Narvik's days fit one chunk; recomputed in chunks of 50 rows (in a transaction
    that is rolled back: the shared database is not changed), every table is the
    same."""
    days = local_days(int(simulated.start * 1e6), int(simulated.end * 1e6), settings.timezone)
    with psycopg.connect(simulated.url, autocommit=True) as conn:
        stored = _tables(conn)
        assert all(stored.values()), "nothing to compare"
        with conn.transaction(force_rollback=True):
            for day in days:
                update_day(conn, from_epoch_us(day), settings, chunk_rows=50)
            streamed = _tables(conn)
        assert _tables(conn) == stored
    _assert_same_tables(streamed, stored)


#: the issue's bound on the worker's memory, at the issue's size
RSS_BUDGET_MB = 300
BUSY_READINGS = 1_500_000


def test_a_day_of_one_and_a_half_million_readings_at_one_site_stays_within_300_mb(
    db_url: str, conn: psycopg.Connection
) -> None:
    """The shape that took the worker to 963 MB in the outside probe: one building's
    meters (register and power, every second) writing 1.5 M readings in a day.
    ``smartby indicators update`` recomputes it in a real process, whose own peak
    RSS is measured (ru_maxrss from wait4, `bench.common.measure_process`)."""
    written = load_busy_day(db_url, "energy", DAY, BUSY_READINGS)
    assert written >= BUSY_READINGS
    assert conn.execute("SELECT day FROM indicator_days_pending").fetchall() == [
        (from_epoch_us(LO),)
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env["SMARTBY_DATABASE_URL"] = db_url
    done = measure_process([sys.executable, "-m", "smartby", "indicators", "update"], env)
    assert done.returncode == 0, done.stderr
    assert "recomputed the indicators of 1 day(s)" in done.stdout
    assert done.peak_rss_mb <= RSS_BUDGET_MB, f"peak RSS {done.peak_rss_mb:.0f} MB"
    # and the day was really computed: every meter's register, all day
    meters = written // (2 * 86_400)
    row = conn.execute("SELECT kwh, coverage FROM energy_daily").fetchone()
    assert row is not None
    kwh, coverage = row
    assert coverage == pytest.approx(1.0, abs=1e-3)
    assert 3.0 * 24 * meters < kwh < 5.0 * 24 * meters  # 3-5 kW each
