"""The indicator tables against independent computations: SQL over the raw readings
for the simulated city, and hand-made meters whose answers are known exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from core.settings import Settings
from db.indicators import mark_days, update_pending
from db.rollups import create_staging, merge_partials
from devices.catalogue import load_catalogue, narvik_catalogue_path
from tests.fixtures.ingest import register
from tests.fixtures.simulated import SimulatedData

# -- the simulated city: tables equal SQL over its readings ---------------------------

# EEA 2024 band lower bounds, written out again here rather than imported
_BANDS = """(VALUES ('pm25', 5, 15, 50, 90, 140), ('pm10', 15, 45, 120, 195, 270),
                    ('no2', 10, 25, 60, 100, 150), ('o3', 60, 100, 120, 160, 180),
                    ('so2', 20, 40, 125, 190, 275)) AS b(metric, b1, b2, b3, b4, b5)"""

INDEPENDENT_AQI = f"""
    WITH means AS (
        SELECT d.site_id, s.metric, date_trunc('hour', r.time) AS hour, avg(r.value) AS mean
        FROM readings r JOIN series s ON s.id = r.series_id JOIN devices d ON d.id = s.device_id
        JOIN unnest(%s::text[], %s::int[]) AS c(device_id, interval_s) ON c.device_id = d.id
        WHERE r.quality NOT IN (4, 9) AND s.metric IN ('pm25', 'pm10', 'no2', 'o3', 'so2')
        GROUP BY 1, 2, 3
        -- valid hours: 75 per cent of the hour, by the catalogue's reporting interval
        HAVING count(*) * min(c.interval_s) >= 0.75 * 3600
    )
    SELECT site_id, hour,
           max(1 + (mean >= b1)::int + (mean >= b2)::int + (mean >= b3)::int
                 + (mean >= b4)::int + (mean >= b5)::int) AS level
    FROM means JOIN {_BANDS} USING (metric)
    GROUP BY 1, 2 ORDER BY 1, 2"""


def test_aqi_levels_equal_bands_applied_to_sql_hourly_means(simulated: SimulatedData) -> None:
    with psycopg.connect(simulated.url) as conn:
        devices = load_catalogue(narvik_catalogue_path()).devices
        want = conn.execute(
            INDEPENDENT_AQI, ([d.id for d in devices], [d.interval_s for d in devices])
        ).fetchall()
        got = conn.execute("SELECT site_id, hour, level FROM aqi_hourly ORDER BY 1, 2").fetchall()
        assert len(got) > 10 * 24 * 2
        assert got == want
        # the dominant pollutant is one whose own level is the station's
        wrong = conn.execute(
            f"""SELECT a.site_id, a.hour FROM aqi_hourly a JOIN {_BANDS} ON b.metric = a.dominant
                CROSS JOIN LATERAL (SELECT CASE a.dominant WHEN 'pm25' THEN a.pm25
                    WHEN 'pm10' THEN a.pm10 WHEN 'no2' THEN a.no2 WHEN 'o3' THEN a.o3
                    ELSE a.so2 END AS mean) m
                WHERE 1 + (m.mean >= b1)::int + (m.mean >= b2)::int + (m.mean >= b3)::int
                      + (m.mean >= b4)::int + (m.mean >= b5)::int <> a.level"""
        ).fetchall()
        assert wrong == []


def test_traffic_tables_equal_sql_over_the_counts(simulated: SimulatedData) -> None:
    with psycopg.connect(simulated.url) as conn:
        want = conn.execute(
            """SELECT s.device_id, (r.time AT TIME ZONE 'Europe/Oslo')::date, sum(r.value)
               FROM readings r JOIN series s ON s.id = r.series_id
               WHERE s.metric = 'vehicle_count' AND r.quality NOT IN (4, 9)
               GROUP BY 1, 2 ORDER BY 1, 2"""
        ).fetchall()
        got = conn.execute(
            "SELECT device_id, day, volume FROM traffic_daily ORDER BY 1, 2"
        ).fetchall()
        assert got == want
        speeds = conn.execute(
            """WITH c AS (
                   SELECT s.device_id, r.time,
                          max(r.value) FILTER (WHERE s.metric = 'vehicle_count') AS n,
                          max(r.value) FILTER (WHERE s.metric = 'speed') AS v
                   FROM readings r JOIN series s ON s.id = r.series_id
                   WHERE r.quality NOT IN (4, 9) GROUP BY 1, 2)
               SELECT c.device_id, date_trunc('hour', c.time),
                      sum(n * v) FILTER (WHERE n > 0 AND v IS NOT NULL)
                          / nullif(sum(n) FILTER (WHERE n > 0 AND v IS NOT NULL), 0)
               FROM c JOIN devices d ON d.id = c.device_id WHERE d.kind = 'traffic'
               GROUP BY 1, 2 ORDER BY 1, 2"""
        ).fetchall()
        stored = conn.execute(
            "SELECT device_id, hour, mean_speed_kmh FROM traffic_hourly ORDER BY 1, 2"
        ).fetchall()
        assert [r[:2] for r in stored] == [r[:2] for r in speeds]
        for (_, _, mine), (_, _, theirs) in zip(stored, speeds, strict=True):
            assert mine == pytest.approx(theirs)
        # privacy: nothing finer than an hour, and full days of 15-minute counts
        full = conn.execute(
            "SELECT count(*), min(coverage), max(coverage) FROM traffic_daily"
            " WHERE day_start >= to_timestamp(%s)"
            " AND day_start < to_timestamp(%s) - interval '1 day'",
            (simulated.start, simulated.end),
        ).fetchone()
        assert full is not None
        assert full[0] >= 8
        adt = conn.execute("SELECT count(*), min(full_days) FROM traffic_adt").fetchone()
        assert adt is not None
        assert adt[0] >= 7
        assert adt[1] >= 1


def test_simulated_buildings_get_plausible_daily_energy(simulated: SimulatedData) -> None:
    with psycopg.connect(simulated.url) as conn:
        rows = conn.execute(
            "SELECT site_id, kwh, co2e_kg, coverage, grid_factor_g_per_kwh FROM energy_daily"
        ).fetchall()
        buildings = conn.execute(
            "SELECT count(DISTINCT site_id) FROM devices WHERE kind = 'energy'"
        ).fetchone()
        assert buildings is not None
        assert len({r[0] for r in rows}) == buildings[0]
        for site, kwh, co2e, coverage, factor in rows:
            assert 0 <= kwh < 50_000, site
            assert co2e == pytest.approx(kwh * factor / 1000)
            assert 0 < coverage <= 1.0 + 1e-9, site
        hourly_sum = conn.execute(
            """SELECT d.site_id, d.kwh, sum(h.kwh) FROM energy_daily d
               JOIN energy_hourly h ON h.site_id = d.site_id AND h.hour >= d.day_start
                AND h.hour < d.day_start + interval '1 day'
               GROUP BY 1, 2, d.day"""
        ).fetchall()
        for site, day_kwh, hours_kwh in hourly_sum:
            assert day_kwh == pytest.approx(hours_kwh), site


# -- hand-made meters -------------------------------------------------------------------

H = datetime(2026, 11, 10, 9, tzinfo=UTC)  # 10:00 in Narvik


def _series(conn: psycopg.Connection, device: str, metric: str) -> int:
    row = conn.execute(
        "INSERT INTO series (device_id, metric) VALUES (%s, %s) RETURNING id", (device, metric)
    ).fetchone()
    assert row is not None
    return int(row[0])


def _readings(conn: psycopg.Connection, series: int, rows: list[tuple[datetime, float]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (series_id, time, value, quality) VALUES (%s, %s, %s, 1)",
            [(series, t, v) for t, v in rows],
        )


def _update(conn: psycopg.Connection, settings: Settings, start: datetime, end: datetime) -> None:
    with psycopg.connect(settings.database_url.get_secret_value()) as c:  # type: ignore[union-attr]
        with c.transaction():
            mark_days(c, start, end, settings.timezone)
        update_pending(c, settings)


def test_a_meter_reset_counts_the_new_reading_not_a_negative_step(
    conn: psycopg.Connection, settings: Settings
) -> None:
    register(conn, "em-1", kind="energy")
    register_kwh = [100.0, 101.0, 102.0, 0.5, 1.5]  # reset between 10:30 and 10:45
    _readings(
        conn,
        _series(conn, "em-1", "energy"),
        [(H + timedelta(minutes=15 * i), v) for i, v in enumerate(register_kwh)],
    )
    _update(conn, settings, H, H + timedelta(hours=2))
    hourly = conn.execute("SELECT hour, kwh, coverage FROM energy_hourly ORDER BY hour").fetchall()
    assert hourly == [(H, pytest.approx(1 + 1 + 0.5 + 1), pytest.approx(1.0))]
    daily = conn.execute("SELECT day, kwh, co2e_kg FROM energy_daily").fetchall()
    assert daily == [(H.date(), pytest.approx(3.5), pytest.approx(3.5 * 19 / 1000))]


def test_power_is_integrated_over_a_23_hour_dst_day(
    conn: psycopg.Connection, settings: Settings
) -> None:
    register(conn, "em-2", kind="energy")
    # 2026-03-29, spring forward in Oslo: local midnight to midnight is 23 hours
    start = datetime.fromisoformat("2026-03-29T00:00:00+01:00")
    end = datetime.fromisoformat("2026-03-30T00:00:00+02:00")
    assert end - start == timedelta(hours=23)
    steps = int((end - start).total_seconds() // 60)
    _readings(
        conn,
        _series(conn, "em-2", "power"),
        [(start + timedelta(minutes=i), 3600.0) for i in range(steps + 1)],
    )
    _update(conn, settings, start, end)
    row = conn.execute("SELECT day::text, kwh, coverage FROM energy_daily").fetchone()
    assert row == ("2026-03-29", pytest.approx(23 * 3.6), pytest.approx(1.0))
    assert conn.execute("SELECT count(*) FROM energy_hourly").fetchone() == (23,)


def test_late_readings_update_an_hour_already_computed(
    conn: psycopg.Connection, settings: Settings
) -> None:
    register(conn, "tc-1", kind="traffic")
    vehicles = _series(conn, "tc-1", "vehicle_count")
    _readings(conn, vehicles, [(H + timedelta(minutes=15 * i), 10.0) for i in range(2)])
    _update(conn, settings, H, H + timedelta(hours=1))
    assert conn.execute("SELECT volume, coverage FROM traffic_hourly").fetchall() == [(20.0, 0.5)]
    # the other half of the hour arrives late
    _readings(conn, vehicles, [(H + timedelta(minutes=15 * i), 30.0) for i in range(2, 4)])
    _update(conn, settings, H, H + timedelta(hours=1))
    assert conn.execute("SELECT volume, coverage FROM traffic_hourly").fetchall() == [(80.0, 1.0)]
    assert conn.execute("SELECT volume FROM traffic_daily").fetchall() == [(80.0,)]


def test_a_day_with_one_count_takes_its_interval_from_the_next_day(
    conn: psycopg.Connection, settings: Settings
) -> None:
    """The first day of a counter holds one 15-minute count, at 23:45 local: no spacing
    of its own, so the spacing to the next day's first count tells the interval."""
    register(conn, "tc-1", kind="traffic")
    vehicles = _series(conn, "tc-1", "vehicle_count")
    midnight = datetime.fromisoformat("2026-02-02T00:00:00+01:00")
    _readings(
        conn,
        vehicles,
        [(midnight + timedelta(minutes=15 * i), 10.0) for i in range(-1, 8)],
    )
    _update(conn, settings, midnight - timedelta(days=1), midnight + timedelta(days=1))
    daily = conn.execute("SELECT day::text, volume FROM traffic_daily ORDER BY day").fetchall()
    assert daily == [("2026-02-01", 10.0), ("2026-02-02", 80.0)]
    last_hour = conn.execute(
        "SELECT volume, coverage FROM traffic_hourly WHERE hour = %s",
        (midnight - timedelta(hours=1),),
    ).fetchone()
    assert last_hour == (10.0, 0.25)  # one of the hour's four 15-minute counts


def test_an_empty_day_writes_nothing_and_clears_what_was_there(
    conn: psycopg.Connection, settings: Settings
) -> None:
    register(conn, "tc-1", kind="traffic")
    vehicles = _series(conn, "tc-1", "vehicle_count")
    _readings(conn, vehicles, [(H, 10.0), (H + timedelta(minutes=15), 10.0)])
    _update(conn, settings, H, H + timedelta(hours=1))
    conn.execute("DELETE FROM readings")
    _update(conn, settings, H, H + timedelta(hours=1))
    for table in ("traffic_hourly", "traffic_daily", "energy_daily", "aqi_hourly"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table


def test_the_cli_recomputes_a_range_with_a_new_grid_factor(
    conn: psycopg.Connection, settings: Settings, db_url: str
) -> None:
    register(conn, "em-1", kind="energy")
    _readings(
        conn,
        _series(conn, "em-1", "energy"),
        [(H + timedelta(minutes=15 * i), 100.0 + i) for i in range(5)],
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env |= {"SMARTBY_DATABASE_URL": db_url, "SMARTBY_GRID_FACTOR_G_PER_KWH": "100"}
    done = subprocess.run(
        [sys.executable, "-m", "smartby", "indicators", "update", "--from", H.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "recomputed the indicators of" in done.stdout
    assert conn.execute("SELECT kwh, co2e_kg FROM energy_daily").fetchall() == [
        (pytest.approx(4.0), pytest.approx(0.4))
    ]
    bad = subprocess.run(
        [sys.executable, "-m", "smartby", "indicators", "update", "--to", H.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].endswith("--to needs --from")


def test_an_hour_with_too_few_readings_has_no_index(
    conn: psycopg.Connection, settings: Settings
) -> None:
    register(conn, "aq-1")
    pm25 = _series(conn, "aq-1", "pm25")
    full = [(H + timedelta(minutes=i), 20.0) for i in range(60)]
    sparse = [(H + timedelta(hours=1, minutes=i), 200.0) for i in range(20)]  # 33 %
    hourly_monitor = [(H + timedelta(hours=h), 7.0) for h in range(2, 4)]  # one an hour
    _readings(conn, pm25, full + sparse)
    register(conn, "aq-2")
    _readings(conn, _series(conn, "aq-2", "pm25"), hourly_monitor)
    with conn.cursor() as cur:  # the rollups ingest would have merged
        rows = cur.execute(
            "SELECT series_id, (extract(epoch FROM time) * 1000000)::int8, value, quality"
            " FROM readings"
        ).fetchall()
        columns = list(zip(*rows, strict=True))
        create_staging(conn)
        with conn.transaction():
            merge_partials(
                conn,
                np.asarray(columns[0], np.int32),
                np.asarray(columns[1], np.int64),
                np.asarray(columns[2], np.float64),
                np.asarray(columns[3], np.int16),
            )
    _update(conn, settings, H, H + timedelta(hours=4))
    got = conn.execute("SELECT site_id, hour, level, pm25 FROM aqi_hourly ORDER BY 2").fetchall()
    assert got == [
        ("site-aq-1", H, 3, 20.0),  # Moderate; the sparse hour of 200 is not an index
        ("site-aq-2", H + timedelta(hours=2), 2, 7.0),
        ("site-aq-2", H + timedelta(hours=3), 2, 7.0),
    ]
