"""What committed readings tell live listeners (`db.stream`): each series once with
the time range of its readings, packed so that one NOTIFY carries hundreds of series,
and heard only when the writing transaction commits."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg

from db.stream import (
    AQI_CHANNEL,
    READINGS_CHANNEL,
    SeriesRange,
    decode_aqi,
    decode_readings,
    notify_aqi_day,
    notify_readings,
    reading_payloads,
)


def test_a_batch_is_one_range_per_series() -> None:
    series = np.array([7, 3, 7, 3, 9, 7], np.int32)
    times = np.array([50, 20, 10, 40, 5, 30], np.int64)
    (payload,) = reading_payloads(series, times)
    assert decode_readings(payload) == [
        SeriesRange(3, 20, 40),
        SeriesRange(7, 10, 50),
        SeriesRange(9, 5, 5),
    ]
    assert reading_payloads(np.empty(0, np.int32), np.empty(0, np.int64)) == []


def test_many_series_take_a_few_payloads_within_the_limit() -> None:
    count = 1000
    series = np.arange(count, dtype=np.int32)
    times = np.arange(count, dtype=np.int64) * 1_000_000
    payloads = reading_payloads(series, times)
    assert 1 < len(payloads) <= 5
    assert all(len(p) < 8000 for p in payloads)
    ranges = [r for p in payloads for r in decode_readings(p)]
    assert [r.series_id for r in ranges] == list(range(count))


def test_payloads_of_another_version_or_garbage_are_ignored() -> None:
    assert decode_readings("r2:AAAA") == []
    assert decode_readings("r1:AAA=") == []
    assert decode_aqi("nonsense") is None


def test_listeners_hear_only_what_commits(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {READINGS_CHANNEL}")
        listener.execute(f"LISTEN {AQI_CHANNEL}")
        with psycopg.connect(db_url) as writer:
            notify_readings(writer, np.array([1], np.int32), np.array([5], np.int64))
            writer.rollback()
            notify_readings(writer, np.array([2, 2], np.int32), np.array([8, 6], np.int64))
            writer.commit()
        with psycopg.connect(db_url) as writer:
            notify_aqi_day(
                writer, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
            )
        heard = list(listener.notifies(timeout=5, stop_after=2))
    assert [n.channel for n in heard] == [READINGS_CHANNEL, AQI_CHANNEL]
    assert decode_readings(heard[0].payload) == [SeriesRange(2, 6, 8)]
    span = decode_aqi(heard[1].payload)
    assert span is not None
    assert (span[1] - span[0]).days == 1
