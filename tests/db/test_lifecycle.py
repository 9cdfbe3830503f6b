"""Storage lifecycle (migration 0010, db/lifecycle.py): raw readings go after
SMARTBY_RETENTION_RAW, whole chunks at a time, but never a chunk whose rollups are
incomplete — here because late data queued its day for the indicator job, or because
readings are missing from the rollups — while rollups and indicators stay for ever;
quarantine goes after its own retention; plain PostgreSQL deletes in batches; and the
community edition's native policies are what TimescaleDB documents."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from psycopg import sql

from core.rollups import epoch_us
from core.settings import Settings, load_settings
from db.indicators import update_pending
from db.lifecycle import (
    ExpiredError,
    apply_settings,
    community_statements,
    edition,
    raw_dropped_before,
    retention_pass,
)
from db.migrate import migrate
from db.rollups import (
    create_staging,
    merge_partials,
    minute_bounds,
    minute_partials_query,
    rebuild,
)
from stack.ports import free_port
from stack.postgres import PostgresCluster
from tests.fixtures.ingest import register
from tests.fixtures.services import Services, make_service_root

#: when retention runs in these tests, and what it keeps: 30 days (ingest accepts 20)
AT = datetime(2026, 3, 1, tzinfo=UTC)
KEEP = {"retention_raw": "30d", "ingest_max_past_days": 20}


def day(n: int) -> datetime:
    """Noon UTC of the day ``n`` days before AT (each in its own one-day chunk)."""
    return (AT - timedelta(days=n)).replace(hour=12)


def ingest(conn: psycopg.Connection, series: int, moments: list[datetime], tz: str) -> None:
    """Readings stored as ingest stores them: the rows and their rollups in one
    transaction, and their local days queued for the indicator job."""
    values = np.full(len(moments), 10.0)
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (time, series_id, value, quality) VALUES (%s, %s, 10, 1)",
                [(t, series) for t in moments],
            )
        merge_partials(
            conn,
            np.full(len(moments), series, np.int32),
            np.array([epoch_us(t) for t in moments], np.int64),
            values,
            np.ones(len(moments), np.int16),
            tz,
        )


@pytest.fixture
def owner(db_url: str) -> psycopg.Connection:
    connection = psycopg.connect(db_url)
    create_staging(connection)
    connection.commit()
    yield connection
    connection.close()


def setup_series(conn: psycopg.Connection) -> int:
    register(conn, "aq-old")
    row = conn.execute(
        "INSERT INTO series (device_id, metric) VALUES ('aq-old', 'pm25') RETURNING id"
    ).fetchone()
    conn.commit()
    return int(row[0])


def chunk_ranges(conn: psycopg.Connection) -> list[datetime]:
    return [
        start
        for (start,) in conn.execute(
            "SELECT range_start FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'readings' ORDER BY range_start"
        )
    ]


def test_retention_keeps_a_chunk_whose_late_data_is_not_yet_in_the_indicators(
    services: Services, owner: psycopg.Connection
) -> None:
    settings = services.settings(**KEEP)
    series = setup_series(owner)
    ingest(owner, series, [day(n) for n in (33, 32, 31, 5)], settings.timezone)
    update_pending(owner, settings)  # the indicators of those days are computed
    owner.autocommit = True
    apply_settings(owner, settings)
    # late data: a reading for 33 days ago arrives (ingest merges its rollups in the
    # same transaction and queues its day); before the indicator job gets to it, the
    # retention pass comes
    owner.autocommit = False
    ingest(owner, series, [day(33) + timedelta(minutes=5)], settings.timezone)
    owner.autocommit = True
    report = retention_pass(owner, at=AT)
    assert report.removed_readings == 0
    assert report.kept is not None
    assert "wait to be recomputed" in report.kept[2]
    assert report.kept[0] == day(33).replace(hour=0)
    assert len(chunk_ranges(owner)) == 4
    assert raw_dropped_before(owner) is None
    # once the indicators have the late reading, the expired chunks go, oldest first
    owner.autocommit = False
    update_pending(owner, settings)
    owner.autocommit = True
    report = retention_pass(owner, at=AT)
    assert report.kept is None
    assert report.removed_readings == 4
    assert [start for start, _ in report.ranges] == [day(n).replace(hour=0) for n in (33, 32, 31)]
    assert chunk_ranges(owner) == [day(5).replace(hour=0)]
    assert raw_dropped_before(owner) == day(31).replace(hour=0) + timedelta(days=1)
    # rollups and indicators are kept for ever
    hours = owner.execute(
        "SELECT count(*), sum(count) FROM rollups WHERE resolution = '1h' AND bucket < %s",
        (day(30),),
    ).fetchone()
    assert hours == (3, 4)
    assert (
        owner.execute("SELECT count(*) FROM aqi_hourly WHERE hour < %s", (day(30),)).fetchone()[0]
        >= 0
    )
    # and nothing recomputes from the readings that are gone
    with pytest.raises(ExpiredError):
        rebuild(owner, day(33), day(32), tz=settings.timezone)


def test_minute_rows_go_with_the_readings_and_hours_and_days_stay(
    services: Services, owner: psycopg.Connection
) -> None:
    """The 1-minute resolution lives as long as the raw readings: where retention
    removes the readings it removes their minute rows, and no minute is answered
    there any more; hourly and daily rollups stay."""
    settings = services.settings(**KEEP)
    series = setup_series(owner)
    often = [timedelta(seconds=10 * i) for i in range(60)]  # minute rows of their own
    ingest(owner, series, [day(33) + dt for dt in often], settings.timezone)
    ingest(owner, series, [day(5) + dt for dt in often], settings.timezone)
    update_pending(owner, settings)
    owner.autocommit = True
    apply_settings(owner, settings)

    def minutes(lo: datetime, hi: datetime) -> tuple[int, int]:
        """(minute rows stored, minutes answered) in [lo, hi)."""
        stored = owner.execute(
            "SELECT count(*) FROM rollups WHERE resolution = '1m' AND bucket >= %s AND bucket < %s",
            (lo, hi),
        ).fetchone()[0]
        answered = owner.execute(
            minute_partials_query(sql.Literal(series)), minute_bounds(lo, hi)
        ).fetchall()
        return stored, len(answered)

    old = (day(33).replace(hour=0), day(32).replace(hour=0))
    recent = (day(5).replace(hour=0), day(4).replace(hour=0))
    assert minutes(*old) == minutes(*recent) == (10, 10)
    report = retention_pass(owner, at=AT)
    assert report.removed_readings == 60
    assert minutes(*old) == (0, 0)
    assert minutes(*recent) == (10, 10)
    kept = owner.execute(
        "SELECT resolution, sum(count) FROM rollups WHERE bucket < %s GROUP BY 1 ORDER BY 1",
        (old[1],),
    ).fetchall()
    assert kept == [("1d", 60), ("1h", 60)]


def test_retention_keeps_a_chunk_whose_readings_are_missing_from_the_rollups(
    services: Services, owner: psycopg.Connection
) -> None:
    settings = services.settings(**KEEP)
    series = setup_series(owner)
    ingest(owner, series, [day(40), day(35)], settings.timezone)
    # a reading that reached the table without its rollups (a restore of raw data, a
    # hand-made repair): its hour does not count it
    owner.execute(
        "INSERT INTO readings (time, series_id, value, quality) VALUES (%s, %s, 3, 1)",
        (day(35) + timedelta(minutes=1), series),
    )
    owner.commit()
    update_pending(owner, settings)
    owner.autocommit = True
    apply_settings(owner, settings)
    report = retention_pass(owner, at=AT)
    assert report.removed_readings == 1  # the day 40 chunk: complete
    assert report.kept is not None
    assert f"series {series}" in report.kept[2]
    assert "smartby rollup rebuild" in report.kept[2]
    owner.autocommit = False
    rebuild(owner, day(35).replace(hour=0), day(34).replace(hour=0), tz=settings.timezone)
    update_pending(owner, settings)
    owner.autocommit = True
    report = retention_pass(owner, at=AT)
    assert (report.removed_readings, report.kept) == (2, None)


def test_nothing_is_removed_without_a_retention_and_quarantine_goes_after_its_own(
    services: Services, owner: psycopg.Connection
) -> None:
    series = setup_series(owner)
    ingest(owner, series, [day(400)], "Europe/Oslo")
    update_pending(owner, services.settings())
    owner.execute(
        "INSERT INTO quarantine (received_at, topic, reason, payload) VALUES"
        " (%s, 't', 'undecodable', 'x'), (%s, 't', 'undecodable', 'y')",
        (AT - timedelta(days=91), AT - timedelta(days=89)),
    )
    owner.commit()
    owner.autocommit = True
    apply_settings(owner, services.settings())  # defaults: raw for ever, quarantine 90 days
    report = retention_pass(owner, at=AT)
    assert (report.removed_readings, report.removed_quarantine) == (0, 1)
    assert owner.execute("SELECT count(*) FROM readings").fetchone() == (1,)


def test_device_health_goes_after_its_own_retention_and_stays_when_kept_for_ever(
    services: Services, owner: psycopg.Connection
) -> None:
    register(owner, "lora-old")
    ages = [401, 399, 1]
    owner.execute(
        "INSERT INTO device_health (time, device_id, rssi, battery_v)"
        " SELECT t, 'lora-old', -110, 3.6 FROM unnest(%s::timestamptz[]) t",
        ([day(n) for n in ages],),
    )
    owner.commit()
    owner.autocommit = True
    apply_settings(owner, services.settings(retention_health="forever"))
    assert retention_pass(owner, at=AT).removed_health == 0
    apply_settings(owner, services.settings())  # the default: 400 days
    report = retention_pass(owner, at=AT, max_rows=1)  # a row a step: the steps go on
    assert report.removed_health == 1
    kept = owner.execute("SELECT time FROM device_health ORDER BY time").fetchall()
    assert [t for (t,) in kept] == [day(399), day(1)]
    # what an ingest worker runs (the step the writer role may call), as of now
    owner.execute("DELETE FROM device_health")
    owner.execute(
        "INSERT INTO device_health (time, device_id) VALUES"
        " (now() - interval '401 days', 'lora-old'), (now() - interval '1 day', 'lora-old')"
    )
    assert retention_pass(owner).removed_health == 1
    assert owner.execute("SELECT count(*) FROM device_health").fetchone() == (1,)


def test_plain_postgresql_deletes_an_expired_day_in_batches() -> None:
    root = make_service_root("smartby-plain-retention-")
    cluster = PostgresCluster(root / "pg", port=free_port(), durable=False, timescaledb=False)
    try:
        cluster.start()
        url = cluster.url("smartby")
        settings = load_settings(env="test", database_url=url, **KEEP)
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
            assert edition(conn) == "postgresql"
            apply_settings(conn, settings)
        with psycopg.connect(url) as conn:
            create_staging(conn)
            series = setup_series(conn)
            moments = [day(32) + timedelta(minutes=m) for m in range(50)] + [day(5)]
            ingest(conn, series, moments, settings.timezone)
            update_pending(conn, settings)
            conn.autocommit = True
            report = retention_pass(conn, at=AT, max_rows=20)  # three batches of the day
            assert (report.removed_readings, report.kept) == (50, None)
            assert conn.execute("SELECT count(*) FROM readings").fetchone() == (1,)
            assert raw_dropped_before(conn) == day(32).replace(hour=0) + timedelta(days=1)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_community_edition_statements_are_timescaledbs_documented_calls(
    settings: Settings, conn: psycopg.Connection
) -> None:
    """Compression (ALTER TABLE ... SET (timescaledb.compress, compress_segmentby,
    compress_orderby), add_compression_policy(hypertable, compress_after),
    remove_compression_policy(hypertable, if_exists)) and the job (add_job(proc,
    schedule_interval), delete_job(job_id)), as TimescaleDB 2.19's API reference
    gives them.  The Apache build here cannot run them, but it knows them: each
    resolves (name, named arguments, types) and is refused only for its licence —
    SQLSTATE 0A000 "not supported under the current apache license" — never as an
    unknown function or a syntax error.  Untested live: the policies' effect."""
    statements = community_statements(
        settings.model_copy(update={"compress_after": timedelta(days=7)})
    )
    texts = [s.as_string(conn) for s, _ in statements]
    assert texts == [
        "ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby ="
        " 'series_id', timescaledb.compress_orderby = 'time')",
        "SELECT remove_compression_policy('readings', if_exists => true)",
        "SELECT add_compression_policy('readings', compress_after => %(compress_after)s)",
        "SELECT delete_job(job_id) FROM timescaledb_information.jobs"
        " WHERE proc_name = %(procedure)s",
        "SELECT add_job('smartby_lifecycle_job', schedule_interval => %(every)s)",
    ]
    assert edition(conn) == "apache"
    refusals = []
    for statement, params in statements:
        try:
            with conn.transaction():
                conn.execute(statement, params)
        except psycopg.errors.FeatureNotSupported as exc:
            refusals.append(str(exc))
    assert len(refusals) >= 3
    assert all("apache" in refusal for refusal in refusals), refusals
    # the job's procedure itself runs on any edition (as the owner), as the scheduler
    # would call it
    conn.execute("CALL smartby_lifecycle_job(0, '{}')")


def test_a_retention_shorter_than_the_ingest_window_is_refused() -> None:
    from core.settings import SettingsError

    with pytest.raises(SettingsError, match="SMARTBY_RETENTION_RAW"):
        load_settings(retention_raw="100d", ingest_max_past_days=400)


def test_smartby_db_size_reports_tables_chunks_and_growth(
    services: Services, owner: psycopg.Connection, db_url: str
) -> None:
    series = setup_series(owner)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ingest(owner, series, [now - timedelta(hours=h) for h in range(1, 49)], "Europe/Oslo")
    owner.execute("ANALYZE readings")
    owner.commit()
    out = subprocess.run(
        [sys.executable, "-m", "smartby", "db", "size"],
        capture_output=True,
        text=True,
        env={"SMARTBY_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "readings (hypertable)" in out.stdout
    assert "readings chunks:" in out.stdout
    # 48 readings in the last 7 days: 6.9 a day
    assert "7 a day" in out.stdout
    assert " a year" in out.stdout
