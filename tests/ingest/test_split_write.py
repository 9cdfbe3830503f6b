"""A large batch written over two connections (`ingest.writer`, module docstring): every
reading stored once, rollups exact against an independent GROUP BY, and a batch whose
second half committed alone (the first connection failed after it) absorbed when it
comes again, as a redelivery does."""

from __future__ import annotations

import threading
import time

import orjson
import psycopg

from ingest.pipeline import BatchPreparer, Limits, Message, PreparedBatch
from ingest.writer import BatchWriter, DatabaseRegistry, WriteResult, _part
from tests.fixtures.ingest import count, register

METRICS = ("pm25", "pm10", "no2", "o3", "temperature", "humidity")


def packs(t0: float, messages: int = 40, devices: int = 3) -> list[Message]:
    """Packs of six metrics from a few devices, one a second from ``t0``: series of both
    parities."""
    return [
        Message(
            f"smartby/aq-{i % devices}/telemetry",
            orjson.dumps(
                [{"bt": t0 + i, "n": METRICS[0], "v": float(i)}]
                + [{"n": m, "v": float(i % 7 + k)} for k, m in enumerate(METRICS[1:])]
            ),
            mid=i + 1,
            received=t0 + i + 1,
        )
        for i in range(messages)
    ]


def pack_batch(db_url: str, t0: float, messages: int = 40) -> PreparedBatch:
    registry = DatabaseRegistry(db_url)
    try:
        preparer = BatchPreparer(registry, Limits(65536, 400 * 86400, 300), "smartby")
        return preparer.prepare(packs(t0, messages))
    finally:
        registry.close()


def rollups_match_readings(conn: psycopg.Connection) -> bool:
    """Hourly rollups against the readings grouped independently."""
    mismatch = conn.execute(
        """SELECT count(*) FROM (
               SELECT series_id, date_bin('1 hour', time, timestamptz 'epoch') AS bucket,
                      count(*)::int4 AS n, sum(value) AS total
               FROM readings GROUP BY 1, 2) g
           FULL JOIN (SELECT series_id, bucket, count AS n, sum AS total FROM rollups
                      WHERE resolution = '1h') r USING (series_id, bucket)
           WHERE g.n IS DISTINCT FROM r.n OR g.total IS DISTINCT FROM r.total"""
    ).fetchone()
    return mismatch is not None and mismatch[0] == 0


def readings_count(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*), count(DISTINCT (series_id, time)) FROM readings"
    ).fetchone()
    assert row is not None
    assert row[0] == row[1], "a reading is stored twice"
    return int(row[0])


def test_a_split_batch_stores_every_reading_once_with_exact_rollups(
    db_url: str, conn: psycopg.Connection
) -> None:
    for i in range(3):
        register(conn, f"aq-{i}")
    t0 = time.time() - 1800
    batch = pack_batch(db_url, t0)
    writer = BatchWriter(db_url, split=1)
    try:
        assert writer._split(batch) is None, "no chunk yet: one connection creates it"
        writer.write(pack_batch(db_url, t0 - 10, messages=1))
        assert writer._split(batch) is not None, "series of both parities, to split"
        first = writer.write(batch)
        again = writer.write(batch)  # a redelivery of the whole batch
    finally:
        writer.close()
    assert (first.inserted, first.duplicates) == (batch.reading_count, 0)
    assert (again.inserted, again.duplicates) == (0, batch.reading_count)
    assert readings_count(conn) == batch.reading_count + 6
    assert rollups_match_readings(conn)
    assert conn.execute("SELECT count(*) FROM indicator_days_pending").fetchone() != (0,)


def test_a_batch_whose_second_half_committed_alone_is_absorbed_when_redelivered(
    db_url: str, conn: psycopg.Connection
) -> None:
    """The second connection committed, the first failed: nothing was acknowledged, the
    broker sends the batch again, and its readings end up stored once."""
    for i in range(3):
        register(conn, f"aq-{i}")
    batch = pack_batch(db_url, time.time() - 1800)
    odd = (batch.series_ids & 1).astype(bool)
    writer = BatchWriter(db_url, split=1)
    try:
        half = BatchWriter(db_url, split=None)
        try:
            alone = half._write_half(_part(batch, odd))
        finally:
            half.close()
        assert alone.inserted == int(odd.sum())
        assert writer._split(batch) is not None
        result = writer.write(batch)
    finally:
        writer.close()
    assert (result.inserted, result.duplicates) == (int((~odd).sum()), int(odd.sum()))
    assert readings_count(conn) == batch.reading_count
    assert rollups_match_readings(conn)


def test_the_first_connection_takes_the_half_the_second_could_not_lock(
    db_url: str, conn: psycopg.Connection
) -> None:
    """A lock the second connection waits on past its lock_timeout: its transaction
    rolls back and the first writes that half too, merging each partial once."""
    for i in range(3):
        register(conn, f"aq-{i}")
    t0 = time.time() - 1800
    batch = pack_batch(db_url, t0)
    writer = BatchWriter(db_url, split=1)
    result: list[WriteResult] = []
    try:
        writer.write(pack_batch(db_url, t0, messages=1))  # the chunk and the rollup rows exist
        with psycopg.connect(db_url) as blocker:
            # an odd series' hour row, locked as another worker's merge would
            blocker.execute(
                "SELECT 1 FROM rollups WHERE series_id % 2 = 1 AND resolution = '1h' FOR UPDATE"
            )
            thread = threading.Thread(target=lambda: result.append(writer.write(batch)))
            thread.start()
            deadline = time.monotonic() + 30
            # the second connection gave up: the first now waits on that row itself
            while not count(
                conn,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                " AND wait_event_type = 'Lock'",
                "smartby-ingest",
            ):
                assert time.monotonic() < deadline, "the first connection never took over"
                time.sleep(0.05)
            blocker.rollback()
        thread.join(30)
    finally:
        writer.close()
    assert [(r.inserted, r.duplicates) for r in result] == [(batch.reading_count - 6, 6)]
    assert readings_count(conn) == batch.reading_count
    assert rollups_match_readings(conn)


def test_series_first_seen_in_a_batch_are_created_together_and_a_failure_forgets_them(
    db_url: str, conn: psycopg.Connection
) -> None:
    """The new series of a batch come from one statement; when the database is away at
    that moment, preparing the batch again (the worker retries) still gives each reading
    its own series."""
    for i in range(3):
        register(conn, f"aq-{i}")
    t0 = time.time() - 1800
    registry = DatabaseRegistry(db_url)
    preparer = BatchPreparer(registry, Limits(65536, 400 * 86400, 300), "smartby")
    first = [
        Message(f"smartby/aq-{i}/telemetry", orjson.dumps({"time": t0, "pm25": 1.0}), i, 1, t0)
        for i in range(3)
    ]
    pack = packs(t0 + 1)
    try:
        preparer.prepare(first)  # the devices and the catalogue are at hand now: only
        # the new series need the database
        registry.close()
        registry.url = "postgresql://127.0.0.1:1/nowhere?connect_timeout=1"
        try:
            preparer.prepare(pack)
        except psycopg.OperationalError:
            pass
        else:
            raise AssertionError("preparing needed the database")
        registry.url = db_url
        batch = preparer.prepare(pack)
    finally:
        registry.close()
    ids = {
        (device, metric): sid
        for sid, device, metric in conn.execute("SELECT id, device_id, metric FROM series")
    }
    assert len(ids) == 3 * len(METRICS)
    expected = [ids[(f"aq-{i % 3}", key)] for i in range(len(pack)) for key in METRICS]
    assert batch.series_ids.tolist() == expected
