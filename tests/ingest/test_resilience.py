"""Streams of QoS 1 telemetry survive a killed worker, a restarted database and a
second worker on the shared subscription: every message is stored exactly once."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path

import orjson
import psycopg
import pytest

from tests.fixtures.ingest import (
    count,
    register,
    running_worker,
    unique_prefix,
    wait_for,
    worker_process,
)
from tests.fixtures.mqtt import publish_many
from tests.fixtures.services import Services

DEVICES = [f"aq-{i}" for i in range(10)]


def stream(prefix: str, n: int, t0: float) -> list[tuple[str, bytes]]:
    """n single-reading messages spread over DEVICES, each at its own time."""
    return [
        (
            f"{prefix}/{DEVICES[i % len(DEVICES)]}/telemetry",
            orjson.dumps({"time": t0 + i / 1000, "pm25": float(i % 500)}),
        )
        for i in range(n)
    ]


def assert_exactly_once(conn: psycopg.Connection, n: int) -> None:
    total, distinct = conn.execute(
        "SELECT count(*), count(DISTINCT (series_id, time)) FROM readings"
    ).fetchone()
    assert (total, distinct) == (n, n)
    assert count(conn, "SELECT count(*) FROM quarantine") == 0


@pytest.fixture
def devices(conn: psycopg.Connection) -> None:
    for device in DEVICES:
        register(conn, device)


@pytest.mark.slow
def test_kill_9_of_the_worker_mid_stream_then_restart_stores_every_message_once(
    services: Services, conn: psycopg.Connection, devices: None, tmp_path: Path
) -> None:
    """100k messages; the worker is SIGKILLed with part of them committed and part
    unacknowledged; its replacement resumes the persistent session."""
    n = 100_000
    prefix = unique_prefix()
    client_id = f"kill-test-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "worker.log"
    worker = worker_process(services, prefix, client_id, log)
    publisher = threading.Thread(
        target=publish_many, args=(services.mqtt_port, stream(prefix, n, time.time() - 3600))
    )
    try:
        # the worker prints this once subscribed (SUBACK), so its session exists
        wait_for(lambda: "consuming from" in log.read_text(), what="worker subscribed")
        publisher.start()
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM readings") >= n // 4,
            timeout=120,
            what="a quarter of the stream stored",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        stored_at_kill = count(conn, "SELECT count(*) FROM readings")
        assert stored_at_kill < n, "the stream finished before the kill; nothing was tested"

        worker = worker_process(services, prefix, client_id, log)
        publisher.join(180)
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM readings") >= n,
            timeout=180,
            what=f"all {n} messages stored",
        )
        time.sleep(1)  # any redelivered duplicate would be written by now
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert_exactly_once(conn, n)


@pytest.mark.slow
def test_a_database_restart_mid_stream_loses_nothing(
    services: Services, db_url: str, devices: None
) -> None:
    """The worker keeps its messages unacknowledged while PostgreSQL is down, retries,
    and commits them once it is back."""
    n = 20_000
    prefix = unique_prefix()
    settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)

    def stored() -> int:
        try:
            with psycopg.connect(db_url, connect_timeout=2) as c:
                return count(c, "SELECT count(*) FROM readings")
        except psycopg.OperationalError:
            return -1

    with running_worker(settings) as worker:
        publisher = threading.Thread(
            target=publish_many, args=(services.mqtt_port, stream(prefix, n, time.time() - 60))
        )
        publisher.start()
        wait_for(lambda: stored() > 0, timeout=60, what="first commits")
        services.cluster.stop()
        time.sleep(1)  # the outage itself: the worker must ride it out
        services.cluster.start()
        publisher.join(120)
        wait_for(lambda: stored() >= n, timeout=120, what=f"all {n} messages stored")
        errors = worker.metrics.registry.get_sample_value("smartby_ingest_database_errors_total")
    assert (errors or 0) > 0, "the outage did not reach the worker; nothing was tested"
    with psycopg.connect(db_url) as conn:
        assert_exactly_once(conn, n)


@pytest.mark.slow
def test_two_workers_on_the_shared_subscription_split_the_stream(
    services: Services, conn: psycopg.Connection, devices: None
) -> None:
    """Two workers in the same share group: each gets part, together all, none twice."""
    n = 20_000
    prefix = unique_prefix()
    settings = services.settings(
        mqtt_topic_prefix=prefix, ingest_metrics_port=0, ingest_subscription="shared"
    )
    with running_worker(settings) as first, running_worker(settings) as second:
        publish_many(services.mqtt_port, stream(prefix, n, time.time() - 60))
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM readings") >= n,
            timeout=120,
            what=f"all {n} messages stored",
        )
        shares = [
            w.metrics.registry.get_sample_value(
                "smartby_ingest_messages_total", {"outcome": "stored"}
            )
            or 0
            for w in (first, second)
        ]
    assert all(share > n * 0.1 for share in shares), f"uneven split: {shares}"
    assert sum(shares) == n
    assert_exactly_once(conn, n)
