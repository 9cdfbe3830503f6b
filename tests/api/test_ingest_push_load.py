"""Issue 14's "done when" for HTTP push, against ``smartby api`` as deployed: 16
devices post 625 SenML packs of 4 records each at once (10,000 posts); every post is
answered 2xx, a sample is checked in the database the moment its answer arrives (the
answer comes after commit), and exactly 40,000 readings are stored."""

from __future__ import annotations

import time

import psycopg
import pytest

from bench.common import RECORDS_PER_POST, push_concurrently
from tests.api.conftest import ServerFactory, assert_quiet_log
from tests.fixtures.push import add_pushing_device

CLIENTS = 16
POSTS = 10_000


@pytest.mark.slow
def test_ten_thousand_posts_from_sixteen_clients_store_exactly_forty_thousand_readings(
    api_process: ServerFactory, db_url: str, conn: psycopg.Connection
) -> None:
    devices = [(f"aq-load-{i}", add_pushing_device(conn, f"aq-load-{i}")) for i in range(CLIENTS)]
    server = api_process(db_url)
    # whole seconds: a time whose microseconds end in .5 rounds up in to_timestamp and
    # down in ingest, and the probe would miss a reading that is there
    t0 = float(int(time.time()) - POSTS // CLIENTS - 60)

    with psycopg.connect(db_url, autocommit=True) as probe:

        def committed(device: str, when: float) -> bool:
            row = probe.execute(
                "SELECT count(*) FROM readings r JOIN series s ON s.id = r.series_id"
                " WHERE s.device_id = %s AND r.time = to_timestamp(%s)",
                (device, when),
            ).fetchone()
            return row == (RECORDS_PER_POST,)

        run = push_concurrently(server.port, devices, POSTS // CLIENTS, t0, check=committed)

    assert run.statuses == {200: POSTS}
    assert run.stored == POSTS * RECORDS_PER_POST
    assert run.checked == CLIENTS * len(range(0, POSTS // CLIENTS, 50))
    assert conn.execute("SELECT count(*) FROM readings").fetchone() == (40_000,)
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)
    # the rollups count every reading once
    assert conn.execute("SELECT sum(count) FROM rollups WHERE resolution = '1h'").fetchone() == (
        40_000,
    )
    assert_quiet_log(server)
