"""The platform's health in public: /v1/status, /v1/status/devices and
/v1/devices/{id}/health on the simulated database, each number checked against SQL
written here, and the query builders without a database."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient

from api import health_queries
from core.health import device_state
from ingest.writer import DatabaseRegistry
from tests.api.conftest import ClientFactory
from tests.fixtures.simulated import SimulatedData

T0 = datetime(2026, 1, 5, tzinfo=UTC)
T1 = T0 + timedelta(days=1)


def text(query: health_queries.Query) -> str:
    return query[0].as_string(None)


# ---------------------------------------------------------------- query builders


def test_health_queries_keep_values_out_of_the_sql() -> None:
    query = health_queries.readings_by_flag_query(T0, T1, "aq-sentrum")
    assert "aq-sentrum" not in text(query)
    assert "se.device_id = %(device_id)s" in text(query)
    assert query[1] == {"since": T0, "until": T1, "device_id": "aq-sentrum"}
    assert "device_id" not in health_queries.readings_by_flag_query(T0, T1)[1]
    refused = health_queries.quarantine_by_reason_query(T0, T1, "x")
    assert "device_id = %(device_id)s" in text(refused)
    assert refused[1] == {"since": T0, "until": T1, "device_id": "x"}
    assert health_queries.ingest_sessions_query()[1] == {"name": "smartby-ingest-registry"}


def test_newest_per_domain_is_built_on_the_latest_query() -> None:
    """The same rows /v1/latest serves, so traffic's newest is a complete hour."""
    sql = text(health_queries.newest_per_domain_query())
    assert "CROSS JOIN LATERAL" in sql
    assert "resolution = '1h'" in sql
    assert "GROUP BY m.domain" in sql


# ---------------------------------------------------------------- /v1/status


def test_status_counts_readings_per_minute_devices_and_quarantine(
    client: TestClient, simulated: SimulatedData
) -> None:
    response = client.get("/v1/status")
    assert response.status_code == 200, response.text
    assert response.headers["x-license"] == "NLOD-2.0"
    status = response.json()["data"]
    taken = datetime.fromisoformat(status["time"])
    minutes = status["readings_per_minute"]
    assert len(minutes) == 60
    first = datetime.fromisoformat(minutes[0]["minute"])
    assert [datetime.fromisoformat(m["minute"]) for m in minutes] == [
        first + timedelta(minutes=i) for i in range(60)
    ]
    with psycopg.connect(simulated.url) as conn:
        expected = conn.execute(
            "SELECT count(*) FROM readings WHERE time >= %s AND time < %s",
            (first, first + timedelta(hours=1)),
        ).fetchone()
        devices = conn.execute("SELECT kind, status, online, last_seen FROM devices").fetchall()
        refused = dict(
            conn.execute(
                "SELECT reason, count(*) FROM quarantine WHERE received_at >= %s"
                " AND received_at < %s GROUP BY reason",
                (taken - timedelta(hours=24), taken),
            ).fetchall()
        )
    assert expected is not None
    assert sum(m["readings"] for m in minutes) == expected[0]
    states = Counter(
        device_state(kind=k, status=s, online=o, last_seen=seen, now=taken)
        for k, s, o, seen in devices
    )
    assert status["devices"] == {
        "registered": len(devices),
        **{state: states.get(state, 0) for state in ("online", "silent", "offline")},
        "never_seen": states.get("never_seen", 0),
        "disabled": states.get("disabled", 0),
    }
    assert status["quarantined"]["total"] == sum(refused.values())
    assert {r["reason"]: r["count"] for r in status["quarantined"]["by_reason"]} == refused


def test_status_newest_agrees_with_latest(client: TestClient) -> None:
    latest = client.get("/v1/latest").json()["data"]
    metrics = {m["key"]: m["domain"] for m in client.get("/v1/metrics").json()["data"]}
    newest: dict[str, datetime] = {}
    for row in latest:
        domain = metrics[row["metric"]]
        moment = datetime.fromisoformat(row["time"])
        newest[domain] = max(newest.get(domain, moment), moment)
    status = client.get("/v1/status").json()["data"]
    assert {n["domain"]: datetime.fromisoformat(n["time"]) for n in status["newest"]} == newest
    aggregates = {n["domain"]: n["aggregate"] for n in status["newest"]}
    assert aggregates["traffic"] == "1h"
    assert aggregates["air_quality"] == "raw"


def test_status_sees_a_running_ingest_worker(client: TestClient, simulated: SimulatedData) -> None:
    """A worker holds its registry connection for its whole life; that is what counts."""
    assert client.get("/v1/status").json()["data"]["ingest"] == {"workers": 0, "running": False}
    registry = DatabaseRegistry(simulated.url)
    registry.load()
    try:
        ingest = client.get("/v1/status", headers={"cache-control": "no-cache"}).json()
        assert ingest["data"]["ingest"] == {"workers": 1, "running": True}
    finally:
        registry.close()


# ---------------------------------------------------------------- device health


def test_device_health_counts_readings_by_flag_in_the_window(
    client: TestClient, simulated: SimulatedData
) -> None:
    document = client.get("/v1/status/devices").json()
    since = datetime.fromisoformat(document["from"])
    until = datetime.fromisoformat(document["to"])
    assert until - since == timedelta(hours=24)
    with psycopg.connect(simulated.url) as conn:
        rows = conn.execute(
            "SELECT se.device_id, r.quality, count(*) FROM readings r"
            " JOIN series se ON se.id = r.series_id"
            " WHERE r.time >= %s AND r.time < %s GROUP BY 1, 2",
            (since, until),
        ).fetchall()
        registered = conn.execute("SELECT id FROM devices ORDER BY id").fetchall()
    expected: dict[str, dict[int, int]] = {}
    for device_id, quality, count in rows:
        expected.setdefault(device_id, {})[quality] = count
    by_id = {d["device_id"]: d for d in document["data"]}
    assert sorted(by_id) == [r[0] for r in registered]
    names = {1: "good", 2: "not_evaluated", 3: "suspect", 4: "fail", 9: "missing"}
    for device_id, health in by_id.items():
        flags = expected.get(device_id, {})
        assert health["readings"] == {
            **{name: flags.get(flag, 0) for flag, name in names.items()},
            "total": sum(flags.values()),
        }, device_id
    # the simulated faults show: some device has failed readings in the last day
    assert any(d["readings"]["fail"] > 0 for d in by_id.values())


def test_one_devices_health_is_its_entry_of_the_list(client: TestClient) -> None:
    listed = {d["device_id"]: d for d in client.get("/v1/status/devices").json()["data"]}
    one = client.get("/v1/devices/aq-sentrum/health")
    assert one.status_code == 200
    assert one.json()["data"] == listed["aq-sentrum"]
    assert listed["aq-sentrum"]["silent_after_s"] == 15 * 60
    traffic = next(d for d in listed.values() if d["kind"] == "traffic")
    assert traffic["silent_after_s"] == 45 * 60


def test_device_health_of_an_unknown_device_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/v1/devices/no-such-device/health")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_kind_filter_of_the_device_list(client: TestClient) -> None:
    traffic = client.get("/v1/status/devices", params={"kind": "traffic"}).json()["data"]
    assert traffic
    assert {d["kind"] for d in traffic} == {"traffic"}
    assert client.get("/v1/status/devices", params={"kind": "boats"}).status_code == 400


def test_quarantine_counts_are_per_device_and_hold_no_payload(
    db_url: str, conn: psycopg.Connection[tuple[object, ...]], make_client: ClientFactory
) -> None:
    """On a clean database: three refused messages of one device, one of a stranger."""
    conn.execute(
        "INSERT INTO sites (id, name, kind, municipality, lon, lat)"
        " VALUES ('s1', 'S', 'roadside', 'Narvik', 17.4, 68.4)"
    )
    conn.execute("INSERT INTO devices (id, site_id, kind) VALUES ('d1', 's1', 'air_quality')")
    for reason in ("unknown_metric", "unknown_metric", "bad_unit"):
        conn.execute(
            "INSERT INTO quarantine (topic, device_id, reason, payload)"
            " VALUES ('smartby/d1/telemetry', 'd1', %s, 'secret-bytes')",
            (reason,),
        )
    conn.execute(
        "INSERT INTO quarantine (topic, device_id, reason, payload)"
        " VALUES ('smartby/x/telemetry', NULL, 'unknown_device', 'x')"
    )
    fresh = make_client(db_url)
    health = fresh.get("/v1/devices/d1/health")
    assert health.status_code == 200
    assert health.json()["data"]["quarantined"] == {
        "total": 3,
        "by_reason": [{"reason": "bad_unit", "count": 1}, {"reason": "unknown_metric", "count": 2}],
    }
    assert health.json()["data"]["state"] == "never_seen"
    assert "secret-bytes" not in health.text
    status = fresh.get("/v1/status").json()["data"]
    assert status["quarantined"]["total"] == 4
