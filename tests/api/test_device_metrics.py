"""The API's /metrics says how long ago each device was heard from, read from the
devices table at scrape time, beside how long it may stay quiet; the device-silent
alert compares the two (deploy/prometheus/rules/smartby.yml)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.device_metrics import device_freshness_query
from core.health import SILENT_AFTER
from tests.api.conftest import ClientFactory
from tests.fixtures.ingest import register

#: a scrape takes well under this; the ages below are set this far apart at least
SLACK_S = 60


def scrape(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> (labels, value) of every sample, from an exposition text."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def by_device(
    samples: list[tuple[dict[str, str], float]],
) -> dict[str, tuple[dict[str, str], float]]:
    return {labels["device"]: (labels, value) for labels, value in samples}


def seen(conn: psycopg.Connection[Any], device: str, ago: timedelta, online: bool | None) -> None:
    conn.execute(
        "UPDATE devices SET last_seen = now() - %s, online = %s WHERE id = %s",
        (ago, online, device),
    )


def test_the_query_reads_the_devices_table_only() -> None:
    query, params = device_freshness_query()
    text = query.as_string(None)
    assert "FROM devices" in text
    assert "now() - last_seen" in text  # the database's clock, not the API host's
    assert params == {}


def test_each_device_is_exported_with_its_age_and_allowed_silence(
    conn: psycopg.Connection[Any], db_url: str, make_client: ClientFactory
) -> None:
    register(conn, "aq-silent")
    register(conn, "aq-fresh")
    register(conn, "traffic-quiet", kind="traffic")
    register(conn, "aq-offline")
    register(conn, "aq-never")
    register(conn, "aq-disabled", status="disabled")
    seen(conn, "aq-silent", timedelta(minutes=20), None)
    seen(conn, "aq-fresh", timedelta(minutes=2), True)
    seen(conn, "traffic-quiet", timedelta(minutes=20), None)
    seen(conn, "aq-offline", timedelta(minutes=1), False)
    seen(conn, "aq-disabled", timedelta(days=3), None)

    client = make_client(db_url)
    reply = client.get("/metrics")
    assert reply.status_code == 200
    found = scrape(reply.text)
    assert found["smartby_api_database_up"] == [({}, 1.0)]

    ages = by_device(found["smartby_device_last_seen_age_seconds"])
    # never heard from: no age; disabled: not watched
    assert set(ages) == {"aq-silent", "aq-fresh", "traffic-quiet", "aq-offline"}
    for device, minutes in (("aq-silent", 20), ("aq-fresh", 2), ("traffic-quiet", 20)):
        age = ages[device][1]
        assert minutes * 60 <= age < minutes * 60 + SLACK_S, (device, age)
    labels = ages["traffic-quiet"][0]
    assert labels == {"device": "traffic-quiet", "kind": "traffic", "site": "site-traffic-quiet"}

    allowed = {
        d: v for d, (_, v) in by_device(found["smartby_device_silent_after_seconds"]).items()
    }
    assert allowed["aq-silent"] == SILENT_AFTER["other"].total_seconds() == 900
    assert allowed["traffic-quiet"] == SILENT_AFTER["traffic"].total_seconds() == 2700
    # the alert's comparison: only the air-quality device 20 minutes quiet is silent
    silent = {d for d, (_, age) in ages.items() if age > allowed[d]}
    assert silent == {"aq-silent"}

    states = {labels["state"]: value for labels, value in found["smartby_devices"]}
    assert states == {
        "online": 2.0,  # aq-fresh and traffic-quiet (within 45 minutes)
        "silent": 1.0,
        "offline": 1.0,
        "never_seen": 1.0,
        "disabled": 1.0,
    }


def test_the_scrape_succeeds_when_the_device_query_fails(
    conn: psycopg.Connection[Any],
    db_url: str,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """/metrics is the API's health check and Prometheus's sign of life: a failing
    device query must not fail it.  It says so in smartby_api_database_up, exports
    no stale device series, and logs one warning."""
    register(conn, "aq-1")
    seen(conn, "aq-1", timedelta(minutes=1), True)
    client = make_client(db_url)
    assert "aq-1" in client.get("/metrics").text
    conn.execute("ALTER TABLE devices RENAME TO devices_elsewhere")
    try:
        with caplog.at_level(logging.WARNING, logger="api.device_metrics"):
            reply = client.get("/metrics")
    finally:
        conn.execute("ALTER TABLE devices_elsewhere RENAME TO devices")
    assert reply.status_code == 200
    found = scrape(reply.text)
    assert found["smartby_api_database_up"] == [({}, 0.0)]
    assert "smartby_device_last_seen_age_seconds" not in found
    assert "smartby_devices" not in found
    assert "smartby_api_requests_total" in found
    warnings = [r for r in caplog.records if r.name == "api.device_metrics"]
    assert len(warnings) == 1
    assert "UndefinedTable" in warnings[0].getMessage()
    # and back
    assert scrape(client.get("/metrics").text)["smartby_api_database_up"] == [({}, 1.0)]


def test_ages_are_by_the_databases_clock(
    conn: psycopg.Connection[Any], db_url: str, make_client: ClientFactory
) -> None:
    """A device heard from "in the future" by the API host's clock is still 0 s old
    or more by the database's (one clock decides, the one that wrote last_seen)."""
    register(conn, "aq-now")
    now = conn.execute("SELECT now()").fetchone()
    assert now is not None
    conn.execute("UPDATE devices SET last_seen = %s WHERE id = 'aq-now'", (now[0],))
    client = make_client(db_url)
    ages = by_device(scrape(client.get("/metrics").text)["smartby_device_last_seen_age_seconds"])
    assert 0 <= ages["aq-now"][1] < SLACK_S
