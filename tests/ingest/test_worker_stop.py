"""A worker told to stop (SIGTERM) under a backlog writes what it had received by then
and exits; it does not drain the broker's whole backlog first.  What it left is
redelivered to the next worker and stored exactly once, though the resumed session's
backlog reaches that worker before its SUBACK does."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.ingest import count, register, unique_prefix, wait_for
from tests.fixtures.mqtt import publish_many
from tests.fixtures.services import Services
from tests.ingest.test_resilience import DEVICES, assert_exactly_once, stream, worker_process


@pytest.mark.slow
def test_a_stopping_worker_leaves_the_backlog_to_the_next_one(
    services: Services, conn: psycopg.Connection, devices: None, tmp_path: Path
) -> None:
    n = 80_000
    prefix = unique_prefix()
    client_id = f"stop-test-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "worker.log"
    # a first run creates the persistent session, so the broker queues the backlog for it
    worker = worker_process(services, prefix, client_id, log)
    wait_for(lambda: "consuming from" in log.read_text(), what="worker subscribed")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    publish_many(services.mqtt_port, stream(prefix, n, time.time() - 3600))

    # small batches: a quiet machine's worker could otherwise drain the whole backlog
    # between the first commit the test sees and the signal
    worker = worker_process(
        services, prefix, client_id, log, extra_env={"SMARTBY_INGEST_BATCH_SIZE": "200"}
    )
    try:
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM readings") > 0,
            timeout=60,
            what="the backlog flowing",
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        stored_at_stop = count(conn, "SELECT count(*) FROM readings")
        assert stored_at_stop < n, "the worker drained the whole backlog before stopping"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    worker = worker_process(services, prefix, client_id, log)
    try:
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM readings") >= n,
            timeout=120,
            what=f"all {n} messages stored",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert_exactly_once(conn, n)


@pytest.fixture
def devices(conn: psycopg.Connection) -> None:
    for device in DEVICES:
        register(conn, device)
