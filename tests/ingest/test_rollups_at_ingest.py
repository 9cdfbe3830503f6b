"""Readings stored by the ingest worker are merged into rollups in the same
transaction; the rollups equal an independent SQL GROUP BY over the raw readings,
also after late data, redelivery and a failed value."""

from __future__ import annotations

import time

import orjson
import psycopg
import pytest

from tests.fixtures.ingest import count, register, running_worker, unique_prefix, wait_for
from tests.fixtures.mqtt import publish_many
from tests.fixtures.rollups import assert_rollups_match_readings
from tests.fixtures.services import Services


@pytest.mark.slow
def test_rollups_at_ingest_equal_an_independent_group_by(
    services: Services, conn: psycopg.Connection
) -> None:
    for device in ("aq-1", "aq-2", "aq-3"):
        register(conn, device)
    prefix = unique_prefix()
    settings = services.settings(
        mqtt_topic_prefix=prefix, ingest_metrics_port=0, ingest_batch_ms=20, ingest_batch_size=300
    )
    t0 = (int(time.time()) // 86400 - 2) * 86400 + 0.5  # two days ago, off the minute
    stream = [
        (
            f"{prefix}/aq-{1 + i % 3}/telemetry",
            orjson.dumps(
                {
                    "time": t0 + i * 37.0,
                    "pm25": float((i * 7) % 50),
                    "humidity": 140.0 if i == 100 else 50.0 + i % 10,
                }
            ),
        )
        for i in range(3000)  # about 31 hours, across a local midnight
    ]
    late = stream[500:900:3]  # redelivered copies (already stored: must not count twice)
    late_new = [  # readings arriving later for buckets that already have rollups
        (f"{prefix}/aq-1/telemetry", orjson.dumps({"time": t0 + 600 + k, "pm25": 99.0}))
        for k in range(5)
    ]
    with running_worker(settings) as worker:
        publish_many(services.mqtt_port, stream)
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM readings") == 6000,
            timeout=60,
            what="the stream stored",
        )
        publish_many(services.mqtt_port, late + late_new)
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM readings") == 6005,
            timeout=60,
            what="late readings stored",
        )
        wait_for(
            lambda: (
                worker.metrics.registry.get_sample_value("smartby_ingest_readings_duplicate_total")
                == 2 * len(late)
            ),
            what="the redelivered copies absorbed",
        )
    # the impossible humidity is stored as FAIL (and so left out of the rollups)
    impossible = conn.execute("SELECT quality FROM readings WHERE value = 140").fetchall()
    assert impossible == [(4,)]
    assert_rollups_match_readings(conn)
    days = conn.execute("SELECT count(DISTINCT bucket) FROM rollups WHERE resolution = '1d'")
    assert days.fetchone()[0] >= 2


def test_the_worker_keeps_the_indicator_tables_up_to_date(
    services: Services, conn: psycopg.Connection
) -> None:
    """Readings arrive; within a pass of the worker's indicator job the station's
    hourly index is there, and the job's metrics say so."""
    register(conn, "aq-1")
    prefix = unique_prefix()
    settings = services.settings(
        mqtt_topic_prefix=prefix, ingest_metrics_port=0, indicators_interval_s=0.2
    )
    hour = (int(time.time()) // 3600 - 3) * 3600
    stream = [
        (f"{prefix}/aq-1/telemetry", orjson.dumps({"time": hour + 60 * i, "pm25": 20.0}))
        for i in range(60)
    ]
    with running_worker(settings) as worker:
        publish_many(services.mqtt_port, stream)
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM aqi_hourly") == 1,
            timeout=30,
            what="the hour's air quality index",
        )
        row = conn.execute("SELECT level, dominant, pm25 FROM aqi_hourly").fetchone()
        assert row == (3, "pm25", 20.0)  # 15 ≤ 20 < 50: Moderate
        wait_for(
            lambda: (
                worker.metrics.registry.get_sample_value("smartby_indicators_days_updated_total")
                is not None
            ),
            timeout=10,
            what="the indicator metrics",
        )
        assert (
            worker.metrics.registry.get_sample_value("smartby_indicators_days_updated_total") or 0
        ) >= 1
        assert worker.metrics.registry.get_sample_value(
            "smartby_ingest_readings_by_flag_total", {"flag": "1"}
        ) or worker.metrics.registry.get_sample_value(
            "smartby_ingest_readings_by_flag_total", {"flag": "2"}
        )
