"""A spike is only a spike once the next reading exists: when that reading arrives in
a later batch, the stored flag of the spike is worsened in ``readings`` and the
rollups around it are recomputed, so both end as if all readings had come at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import numpy as np
import orjson
import psycopg

from core import qc
from db.catalogue import load_catalogue
from ingest.pipeline import BatchPreparer, Limits, Message
from ingest.writer import BatchWriter, DatabaseRegistry
from tests.fixtures.ingest import register
from tests.fixtures.rollups import assert_rollups_match_readings, minute_rows

T0 = 1_790_000_000.0  # 2026-09-21, a whole minute
PM25 = [5.0, 5.5, 6.0, 300.0, 6.5, 6.0, 5.5]


def _message(device: str, t: float, value: float) -> Message:
    payload = orjson.dumps({"time": t, "pm25": value})
    return Message(f"smartby/{device}/telemetry", payload, received=t)


def _store(
    db_url: str, batches: list[list[Message]], between: Callable[[], object] = lambda: None
) -> int:
    registry = DatabaseRegistry(db_url)
    preparer = BatchPreparer(registry, Limits(65536, 400 * 86400, 300), "smartby")
    writer = BatchWriter(db_url)
    revised = 0
    try:
        for messages in batches:
            revised += writer.write(preparer.prepare(messages)).revised
            between()
    finally:
        writer.close()
        registry.close()
    return revised


def _stored_flags(conn: psycopg.Connection) -> list[int]:
    return [q for (q,) in conn.execute("SELECT quality FROM readings ORDER BY time").fetchall()]


def test_a_spike_completed_by_the_next_batch_is_flagged_fail_and_leaves_the_rollups(
    db_url: str, conn: psycopg.Connection
) -> None:
    register(conn, "aq-1")
    messages = [_message("aq-1", T0 + 60 * i, v) for i, v in enumerate(PM25)]
    # the spike is the last reading of the first batch: no successor yet
    revised = _store(db_url, [messages[:4], messages[4:]])

    flags = _stored_flags(conn)
    assert flags[3] == qc.FAIL
    assert revised >= 1
    # the same flags as one batch holding every reading
    config = qc.DEFAULT_QC["pm25"]
    at_once = qc.evaluate(
        np.ones(len(PM25), np.int32),
        (np.array([T0 + 60 * i for i in range(len(PM25))]) * 1e6).astype(np.int64),
        np.array(PM25),
        config,
    )
    assert flags == at_once.tolist()
    assert_rollups_match_readings(conn)
    assert conn.execute("SELECT max FROM rollups WHERE resolution = '1d'").fetchone() == (6.5,), (
        "the failed spike is still in the daily maximum"
    )


def test_a_revised_spike_leaves_the_minute_rows_of_a_series_that_reports_every_second(
    db_url: str, conn: psycopg.Connection
) -> None:
    """A series reporting every second has 1-minute rows of its own; the spike's
    revision recomputes them too, and every minute again equals the GROUP BY."""
    register(conn, "aq-1")
    messages = [_message("aq-1", T0 + i, v) for i, v in enumerate(PM25)]
    _store(db_url, [messages[:4], messages[4:]])

    assert _stored_flags(conn)[3] == qc.FAIL
    assert minute_rows(conn) == 1  # all seven readings lie in one minute
    assert conn.execute("SELECT count, max FROM rollups WHERE resolution = '1m'").fetchone() == (
        6,
        6.5,
    )
    assert_rollups_match_readings(conn)


def test_a_revision_queues_the_day_of_the_revised_reading_for_its_indicators(
    db_url: str, conn: psycopg.Connection
) -> None:
    register(conn, "aq-1")
    # the spike is the last reading before local midnight, its successor the first after
    midnight = datetime.fromisoformat("2026-09-22T00:00:00+02:00").timestamp()
    start = midnight - 60 * 4
    messages = [_message("aq-1", start + 60 * i, v) for i, v in enumerate(PM25)]
    days: list[str] = []

    def remember() -> None:
        days.extend(
            d.isoformat()
            for (d,) in conn.execute("SELECT day FROM indicator_days_pending ORDER BY day")
        )
        conn.execute("DELETE FROM indicator_days_pending")

    _store(db_url, [messages[:4], messages[4:]], between=remember)
    assert len(days) == 1 + 2, days  # batch 1: its day; batch 2: its day and the spike's
    assert _stored_flags(conn)[3] == qc.FAIL
    assert_rollups_match_readings(conn)


def test_catalogue_bounds_and_qc_defaults_agree_for_pm25(conn: psycopg.Connection) -> None:
    # the test above relies on 300 µg/m³ being physically possible but a spike
    pm25 = load_catalogue(conn)["pm25"]
    assert pm25.min_value <= 300 <= pm25.max_value
    assert qc.DEFAULT_QC["pm25"].spike_fail < 300 - 6


def test_a_restarted_preparer_judges_its_first_reading_against_the_stored_ones(
    db_url: str, conn: psycopg.Connection
) -> None:
    register(conn, "aq-1")
    now = float(int(time.time()) // 60 * 60) - 3600
    before = [_message("aq-1", now + 60 * i, 5.0 + 0.5 * i) for i in range(3)]
    after = [_message("aq-1", now + 60 * (3 + i), v) for i, v in enumerate([300.0, 6.0])]
    _store(db_url, [before])

    def first_flags(seed: bool) -> list[int]:
        registry = DatabaseRegistry(db_url)
        try:
            preparer = BatchPreparer(registry, Limits(65536, 400 * 86400, 300), "smartby")
            if seed:
                assert preparer.seed_history(registry.recent_readings()) == 2
            return preparer.prepare(after).quality.tolist()
        finally:
            registry.close()

    # from nothing, the jump to 300 has no predecessor to be judged against
    assert first_flags(seed=False)[0] == qc.GOOD
    assert first_flags(seed=True)[0] == qc.FAIL
