"""Subscription modes: one plain worker per topic prefix, any number of shared ones,
never both; a worker that may not run says why in one line and exits non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import psycopg

from core.broker import ingest_filters
from ingest.worker import IngestWorker, subscriptions
from tests.fixtures.ingest import count, register, running_worker, unique_prefix, wait_for
from tests.fixtures.mqtt import publish_one
from tests.fixtures.services import Services


def ingest_command(
    services: Services,
    prefix: str,
    mode: str,
    client_id: str | None = None,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    """`smartby ingest` run to its end (a refused one ends at once)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBY_")}
    env.update(
        {
            "SMARTBY_DATABASE_URL": services.database_url,
            "SMARTBY_MQTT_PORT": str(services.mqtt_port),
            "SMARTBY_MQTT_TOPIC_PREFIX": prefix,
            "SMARTBY_INGEST_METRICS_PORT": "0",
            "SMARTBY_INGEST_SUBSCRIPTION": mode,
            **{f"SMARTBY_{key.upper()}": value for key, value in extra.items()},
        }
    )
    argv = [sys.executable, "-m", "smartby", "ingest"]
    if client_id is not None:
        argv += ["--client-id", client_id]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_filters_of_each_mode() -> None:
    smartby = ("smartby",)
    assert ingest_filters("smartby", "plain", smartby) == [
        "smartby/+/telemetry",
        "smartby/+/status",
    ]
    assert ingest_filters("smartby", "shared", smartby) == [
        "$share/smartby-ingest/smartby/+/telemetry",
        "$share/smartby-ingest/smartby/+/status",
    ]
    telemetry, status = subscriptions("city", "plain", smartby)
    assert telemetry[0] == "city/+/telemetry"
    assert telemetry[1].retainHandling == 2  # MQTT v5 §3.8.3.1: no retained replay
    assert status[1].retainHandling == 0
    # by default every profile's topics, the smartby profile's first, each mode alike
    every = subscriptions("city", "shared")
    assert [topic for topic, _ in every] == [
        f"$share/smartby-ingest/{topic}"
        for topic in (
            "city/+/telemetry",
            "city/+/status",
            "tele/+/SENSOR",
            "tele/+/LWT",
            "+/sensor/+/state",
            "+/status",
            "v3/+/devices/+/up",
            "application/+/device/+/event/up",
            "application/+/device/+/event/status",
        )
    ]
    telemetry_kind = {topic: o.retainHandling == 2 for topic, o in every}
    assert telemetry_kind["$share/smartby-ingest/tele/+/SENSOR"]
    assert not telemetry_kind["$share/smartby-ingest/tele/+/LWT"]


def test_a_second_plain_worker_on_the_same_prefix_refuses_to_run(
    services: Services, db_url: str
) -> None:
    """Both plain workers would get every message; the second exits with one line that
    says how to scale out, and a worker on another prefix is not affected."""
    prefix = unique_prefix()
    settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    with running_worker(settings):
        second = ingest_command(services, prefix, "plain", f"second-{uuid.uuid4().hex[:6]}")
        assert second.returncode == 1
        assert second.stderr.count("\n") == 1, second.stderr
        assert second.stderr.startswith(
            f"smartby: error: another ingest worker already consumes topic prefix {prefix!r}"
            " in plain mode, and only one may: to run several workers, set"
            " SMARTBY_INGEST_SUBSCRIPTION=shared on all of them"
        )
        other = services.settings(mqtt_topic_prefix=unique_prefix(), ingest_metrics_port=0)
        with running_worker(other):
            pass


def test_plain_and_shared_workers_exclude_each_other(services: Services, db_url: str) -> None:
    prefix = unique_prefix()
    shared = services.settings(
        mqtt_topic_prefix=prefix, ingest_metrics_port=0, ingest_subscription="shared"
    )
    with running_worker(shared), running_worker(shared):  # shared ones share the prefix
        plain = ingest_command(services, prefix, "plain", f"plain-{uuid.uuid4().hex[:6]}")
        assert plain.returncode == 1
        assert "shared-mode ingest workers already consume topic prefix" in plain.stderr
    plain_settings = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    with running_worker(plain_settings):
        refused = ingest_command(services, prefix, "shared", f"shared-{uuid.uuid4().hex[:6]}")
        assert refused.returncode == 1
        assert refused.stderr.startswith(
            f"smartby: error: a plain-mode ingest worker already consumes topic prefix {prefix!r}"
        )


def test_slots_are_limited_to_the_broker_accounts(services: Services, db_url: str) -> None:
    """Without --client-id a worker claims slot n of SMARTBY_INGEST_MAX_WORKERS (the
    broker has an account smartby-ingest-<n> for each); one more is refused."""
    prefix = unique_prefix()
    settings = services.settings(
        mqtt_topic_prefix=prefix,
        ingest_metrics_port=0,
        ingest_subscription="shared",
        ingest_max_workers=1,
    )
    first = IngestWorker(settings, db_url)
    try:
        assert first.client_id == "smartby-ingest-1"
        second = ingest_command(services, prefix, "shared", ingest_max_workers="1")
        assert second.returncode == 1
        assert "all 1 ingest worker slots are taken (SMARTBY_INGEST_MAX_WORKERS)" in second.stderr
    finally:
        first.close()


def test_a_worker_that_changes_mode_drops_the_other_modes_subscription(
    services: Services, conn: psycopg.Connection
) -> None:
    """A session that subscribed in shared mode, resumed in plain mode: without the
    unsubscribe it would get each message twice (once per subscription)."""
    prefix = unique_prefix()
    register(conn, "aq-1")
    client_id = f"switch-{uuid.uuid4().hex[:6]}"
    shared = services.settings(
        mqtt_topic_prefix=prefix, ingest_metrics_port=0, ingest_subscription="shared"
    )
    with running_worker(shared, client_id):
        pass
    plain = services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0)
    with running_worker(plain, client_id) as worker:
        for n in range(5):
            payload = f'{{"time": {time.time() - 60 + n}, "pm25": {n}}}'.encode()
            publish_one(services.mqtt_port, f"{prefix}/aq-1/telemetry", payload)
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 5, what="5 readings")
        time.sleep(0.5)  # a second copy of any would have arrived by now
        stored = worker.metrics.registry.get_sample_value("smartby_ingest_readings_written_total")
        duplicates = worker.metrics.registry.get_sample_value(
            "smartby_ingest_readings_duplicate_total"
        )
    assert (stored, duplicates or 0) == (5, 0)
