"""Migrations build the data model once, record what ran, and refuse edited history."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from db.connect import has_timescaledb
from db.migrate import MigrationError, applied, discover, migrate
from stack.ports import free_port
from stack.postgres import PostgresCluster
from tests.fixtures.services import Services, make_service_root

DATA_MODEL = {"sites", "devices", "metrics", "series", "readings", "quarantine", "rollups"}


def schema_snapshot(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    """Every column and index of the public schema: enough to see any change."""
    columns = conn.execute(
        """SELECT table_name, column_name, data_type, is_nullable, column_default
           FROM information_schema.columns WHERE table_schema = 'public'
           ORDER BY table_name, column_name"""
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
    ).fetchall()
    return [*columns, *indexes]


def test_migrations_apply_once_and_a_second_run_changes_nothing(empty_database: str) -> None:
    with psycopg.connect(empty_database, autocommit=True) as conn:
        first = migrate(conn)
        assert [m.version for m in first] == [m.version for m in discover()]
        before = schema_snapshot(conn)
        metrics_before = conn.execute("SELECT * FROM metrics ORDER BY key").fetchall()

        assert migrate(conn) == []
        assert schema_snapshot(conn) == before
        assert conn.execute("SELECT * FROM metrics ORDER BY key").fetchall() == metrics_before
        assert set(applied(conn)) == {m.version for m in discover()}

        tables = {
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        assert tables >= DATA_MODEL


def test_readings_is_a_hypertable_when_timescaledb_is_present(
    services: Services, conn: psycopg.Connection
) -> None:
    assert services.cluster.with_timescaledb, "the test cluster should preload TimescaleDB"
    assert has_timescaledb(conn)
    row = conn.execute(
        """SELECT d.time_interval FROM timescaledb_information.dimensions d
           WHERE d.hypertable_name = 'readings' AND d.column_name = 'time'"""
    ).fetchone()
    assert row is not None, "readings is not a hypertable"
    assert row[0].days == 1


def test_readings_stays_a_plain_indexed_table_without_timescaledb() -> None:
    root = make_service_root("smartby-plain-")
    cluster = PostgresCluster(root / "pg", port=free_port(), durable=False, timescaledb=False)
    try:
        cluster.start()
        with psycopg.connect(cluster.url("smartby"), autocommit=True) as conn:
            migrate(conn)
            assert not has_timescaledb(conn)
            indexes = {
                name
                for (name,) in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'readings'"
                )
            }
            assert {"readings_pkey", "readings_time_idx"} <= indexes
            conn.execute("INSERT INTO readings (time, series_id, value) VALUES (now(), 1, 1.5)")
            assert conn.execute("SELECT count(*) FROM readings").fetchone() == (1,)
    finally:
        cluster.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def test_the_metric_catalogue_is_seeded(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT key, domain, unit, definition_uri, min_value, max_value FROM metrics"
    ).fetchall()
    catalogue = {r[0]: r for r in rows}
    for key in (
        "pm25",
        "pm10",
        "no2",
        "o3",
        "so2",
        "energy",
        "power",
        "vehicle_count",
        "heavy_vehicle_count",
        "speed",
        "temperature",
        "humidity",
    ):
        assert key in catalogue, f"metric {key} missing from the catalogue"
    assert catalogue["pm25"][1:] == (
        "air_quality",
        "ug/m3",
        "http://dd.eionet.europa.eu/vocabulary/aq/pollutant/6001",
        0,
        1000,
    )
    assert catalogue["energy"][2] == "kWh"
    assert catalogue["speed"][2] == "km/h"
    assert {r[1] for r in rows} == {"air_quality", "weather", "energy", "traffic"}
    assert all(r[3].startswith("http") and r[4] < r[5] for r in rows)


def test_an_edited_applied_migration_is_refused(empty_database: str, tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t (x int);")
    with psycopg.connect(empty_database, autocommit=True) as conn:
        migrate(conn, discover(tmp_path))
        (tmp_path / "0001_first.sql").write_text("CREATE TABLE t (x bigint);")
        with pytest.raises(MigrationError, match=r"0001_first.sql changed after it was applied"):
            migrate(conn, discover(tmp_path))


def test_a_failing_migration_leaves_nothing_half_applied(
    empty_database: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (x int);")
    (tmp_path / "0002_bad.sql").write_text(
        "CREATE TABLE half (x int);\nINSERT INTO missing_table VALUES (1);"
    )
    with psycopg.connect(empty_database, autocommit=True) as conn:
        with pytest.raises(MigrationError, match=r"0002_bad.sql failed: .*missing_table"):
            migrate(conn, discover(tmp_path))
        assert set(applied(conn)) == {1}
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)


def test_concurrent_runners_apply_each_migration_once(empty_database: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_database, autocommit=True) as conn:
                results.append(len(migrate(conn)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == [0, 0, len(discover())]


def test_migrate_needs_autocommit(empty_database: str) -> None:
    with psycopg.connect(empty_database) as conn, pytest.raises(MigrationError):
        migrate(conn)
