"""The fault harness counts right: a numbered stream through the test broker and a
real worker is all stored, and a reading taken away or stored twice is reported as
lost or duplicated, by sequence number and kind."""

from __future__ import annotations

import psycopg
import pytest

from tests.fixtures.faults import (
    TIMED_METRIC,
    TIMELESS_METRIC,
    Mix,
    NumberedStream,
    TimelessDuplicates,
    assert_nothing_lost_nor_doubled,
    register_devices,
    verify,
)
from tests.fixtures.ingest import running_worker, unique_prefix, wait_for
from tests.fixtures.services import Services


@pytest.mark.slow
def test_the_harness_finds_what_was_lost_and_what_was_stored_twice(
    services: Services, db_url: str
) -> None:
    prefix = unique_prefix()
    settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    credentials = register_devices(db_url, ["harness-a", "harness-b"])
    with (
        running_worker(settings),
        NumberedStream(
            services.mqtt_port, credentials, rate=500, mix=Mix.MIXED, prefix=prefix
        ) as stream,
    ):
        stream.start()
        wait_for(lambda: stream.acknowledged_count() >= 1000, what="a second of the stream")
        stream.stop()
        assert stream.wait_acknowledged(30)
        count = verify(db_url, stream)
    assert_nothing_lost_nor_doubled(count)
    acknowledged = count.total("acknowledged")
    assert count.total("stored") == acknowledged == stream.sent
    assert [d.sent for d in stream.devices] == [d.acknowledged for d in count.devices]

    with psycopg.connect(db_url, autocommit=True) as conn:

        def series(device: str, metric: str) -> int:
            row = conn.execute(
                "SELECT id FROM series WHERE device_id = %s AND metric = %s", (device, metric)
            ).fetchone()
            assert row is not None
            return int(row[0])

        # seq 4 (timed) of harness-a vanishes; seq 7 (time-less) of harness-b is doubled
        conn.execute(
            "DELETE FROM readings WHERE series_id = %s AND value = 4",
            (series("harness-a", TIMED_METRIC),),
        )
        conn.execute(
            "INSERT INTO readings (time, series_id, value)"
            " SELECT time + interval '1 ms', series_id, value FROM readings"
            " WHERE series_id = %s AND value = 7",
            (series("harness-b", TIMELESS_METRIC),),
        )
    count = verify(db_url, stream, stalled_after=0.5, settle=0.1)
    by_device = {d.device: d for d in count.devices}
    assert (by_device["harness-a"].lost, by_device["harness-a"].lost_examples) == (1, [4])
    assert by_device["harness-a"].lost_timeless == 0
    assert by_device["harness-b"].duplicates == by_device["harness-b"].duplicates_timeless == 1
    assert by_device["harness-b"].duplicate_examples == [7]
    with pytest.raises(AssertionError, match="harness-a") as raised:
        assert_nothing_lost_nor_doubled(count)
    assert not isinstance(raised.value, TimelessDuplicates)  # a loss is no time-less double
