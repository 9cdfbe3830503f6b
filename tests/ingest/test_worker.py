"""Devices publish to the real broker; the ingest worker stores every reading once,
converts units, flags impossible values, and quarantines what it cannot store."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import cbor2
import orjson
import psycopg
import pytest

from tests.fixtures.ingest import count, register, running_worker, unique_prefix, wait_for
from tests.fixtures.mqtt import publish_many, publish_one
from tests.fixtures.services import Services


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def ingest_settings(services: Services, db_url: str, prefix: str):
    return services.settings(mqtt_topic_prefix=prefix, ingest_metrics_port=0, ingest_batch_ms=20)


def readings(conn: psycopg.Connection, device: str) -> dict[str, list[tuple[float, float, int]]]:
    rows = conn.execute(
        """SELECT s.metric, extract(epoch FROM r.time)::float8, r.value, r.quality
           FROM readings r JOIN series s ON s.id = r.series_id
           WHERE s.device_id = %s ORDER BY s.metric, r.time""",
        (device,),
    ).fetchall()
    out: dict[str, list[tuple[float, float, int]]] = {}
    for metric, t, value, quality in rows:
        out.setdefault(metric, []).append((t, value, quality))
    return out


def quarantined(conn: psycopg.Connection) -> list[tuple[str, str | None, str, bytes]]:
    return [
        (reason, device, detail, bytes(payload))
        for reason, device, detail, payload in conn.execute(
            "SELECT reason, device_id, detail, payload FROM quarantine ORDER BY id"
        )
    ]


def test_plain_json_senml_json_and_senml_cbor_are_stored_in_canonical_units(
    services: Services, conn: psycopg.Connection, ingest_settings, prefix: str
) -> None:
    """Three devices each send one payload form; every value lands in its canonical unit."""
    register(conn, "aq-1")
    register(conn, "meter-1", kind="energy")
    register(conn, "aq-2")
    t0 = int(time.time()) - 60
    plain = orjson.dumps(
        {"time": datetime.fromtimestamp(t0, UTC).isoformat(), "pm25": 12.5, "no2": 40}
    )
    senml_json = orjson.dumps(
        [
            # RFC 8428 §4.2: a sum is in the record's unit times seconds, so a register
            # published with u=W carries joules: 444,441,600 J = 123.456 kWh
            {
                "bn": "urn:dev:mac:0024befffe804ff1:",
                "bt": t0,
                "n": "energy",
                "u": "W",
                "s": 444_441_600.0,
            },
            {"n": "power", "u": "kW", "v": 2.5},
            {"n": "temperature", "u": "K", "v": 273.15, "t": 10},
        ]
    )
    senml_cbor = cbor2.dumps([{-2: "aq-2/", -3: t0, 0: "no2", 1: "ppb", 2: 10.0}])
    with running_worker(ingest_settings):
        publish_one(services.mqtt_port, f"{prefix}/aq-1/telemetry", plain)
        publish_one(services.mqtt_port, f"{prefix}/meter-1/telemetry", senml_json)
        publish_one(services.mqtt_port, f"{prefix}/aq-2/telemetry", senml_cbor)
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 6, what="6 readings")

    assert readings(conn, "aq-1") == {"pm25": [(t0, 12.5, 1)], "no2": [(t0, 40.0, 1)]}
    meter = readings(conn, "meter-1")
    assert meter["energy"] == [(t0, pytest.approx(123.456), 1)]  # W·s -> kWh
    assert meter["power"] == [(t0, 2500.0, 1)]  # kW -> W
    assert meter["temperature"] == [(t0 + 10, pytest.approx(0.0), 1)]  # K -> Cel
    [(t, no2, flag)] = readings(conn, "aq-2")["no2"]
    assert (t, flag) == (t0, 1)
    assert no2 == pytest.approx(19.13, abs=0.01)  # 10 ppb NO2 at 20 °C -> µg/m³
    assert quarantined(conn) == []
    seen = conn.execute("SELECT count(*) FROM devices WHERE last_seen IS NOT NULL").fetchone()
    assert seen == (3,)


def test_each_bad_input_is_quarantined_with_its_reason_and_the_worker_keeps_going(
    services: Services, conn: psycopg.Connection, ingest_settings, prefix: str
) -> None:
    """A stream of broken messages, then a good one: the good one is stored."""
    register(conn, "aq-1")
    register(conn, "aq-off", status="disabled")
    now = time.time()
    bad = [
        (f"{prefix}/aq-1/telemetry", b"\xff\x00 not json or cbor", "undecodable"),
        (f"{prefix}/ghost/telemetry", b'{"pm25": 1}', "unknown_device"),
        (f"{prefix}/aq-off/telemetry", b'{"pm25": 1}', "device_disabled"),
        (f"{prefix}/aq-1/telemetry", b'{"radon": 3}', "unknown_metric"),
        (f"{prefix}/aq-1/telemetry", orjson.dumps([{"n": "pm25", "u": "W", "v": 1}]), "bad_unit"),
        (
            f"{prefix}/aq-1/telemetry",
            orjson.dumps({"time": now - 3 * 365 * 86400, "pm25": 1}),
            "time_too_old",
        ),
        (
            f"{prefix}/aq-1/telemetry",
            orjson.dumps({"time": now + 86400, "pm25": 1}),
            "time_in_future",
        ),
        (f"{prefix}/aq-1/telemetry", cbor2.dumps([{0: "pm25", 2: float("nan")}]), "non_finite"),
        (f"{prefix}/aq-1/telemetry", b"x" * 70_000, "oversized"),
        (
            f"{prefix}/aq-1/telemetry",
            orjson.dumps([{"n": "pm25", "v": 1, "foo_": 1}]),
            "must_understand",
        ),
        (f"{prefix}/aq-1/status", b"[1, 2]", "bad_status"),
    ]
    with running_worker(ingest_settings) as worker:
        publish_many(services.mqtt_port, [(topic, payload) for topic, payload, _ in bad])
        publish_one(services.mqtt_port, f"{prefix}/aq-1/telemetry", b'{"pm25": 7.5}')
        wait_for(
            lambda: (
                count(conn, "SELECT count(*) FROM readings") == 1
                and count(conn, "SELECT count(*) FROM quarantine") == len(bad)
            ),
            what="1 reading and every bad message quarantined",
        )
        metrics = worker.metrics.registry

    rows = quarantined(conn)
    assert sorted(reason for reason, *_ in rows) == sorted(reason for *_, reason in bad)
    by_reason = {reason: (device, detail, payload) for reason, device, detail, payload in rows}
    assert by_reason["unknown_device"][0] == "ghost"
    assert "ghost" in by_reason["unknown_device"][1]
    assert by_reason["undecodable"][2] == b"\xff\x00 not json or cbor"  # raw bytes kept
    oversized_detail, oversized_payload = by_reason["oversized"][1:]
    assert "70000 bytes" in oversized_detail
    assert len(oversized_payload) == 4096
    assert readings(conn, "aq-1") == {"pm25": [(pytest.approx(time.time(), abs=30), 7.5, 1)]}
    for _topic, _payload, reason in bad:
        value = metrics.get_sample_value("smartby_ingest_quarantined_total", {"reason": reason})
        assert value == 1, reason


def test_impossible_values_are_stored_as_fail_and_good_records_of_the_message_land(
    services: Services, conn: psycopg.Connection, ingest_settings, prefix: str
) -> None:
    """One pack mixing a good record, an impossible value and a string value."""
    register(conn, "aq-1")
    t0 = int(time.time()) - 10
    pack = orjson.dumps(
        [
            {"bt": t0, "n": "pm25", "u": "ug/m3", "v": 8.0},
            {"n": "humidity", "u": "%RH", "v": 140.0},  # physically impossible: FAIL, kept
            {"n": "pm10", "vs": "high"},  # not a number: quarantined record
        ]
    )
    with running_worker(ingest_settings):
        publish_one(services.mqtt_port, f"{prefix}/aq-1/telemetry", pack)
        wait_for(lambda: count(conn, "SELECT count(*) FROM quarantine") == 1, what="quarantine")
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 2, what="2 readings")
    assert readings(conn, "aq-1") == {"humidity": [(t0, 140.0, 4)], "pm25": [(t0, 8.0, 1)]}
    [(reason, device, detail, payload)] = quarantined(conn)
    assert (reason, device, payload) == ("non_numeric", "aq-1", pack)
    assert "record 2" in detail


def test_a_redelivered_message_is_absorbed_by_the_unique_key(
    services: Services, conn: psycopg.Connection, ingest_settings, prefix: str
) -> None:
    """The same message published twice (as after a lost PUBACK) is stored once."""
    register(conn, "aq-1")
    message = orjson.dumps({"time": int(time.time()) - 5, "pm25": 3.0, "no2": 20.0})
    with running_worker(ingest_settings) as worker:
        publish_one(services.mqtt_port, f"{prefix}/aq-1/telemetry", message)
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 2, what="first copy")
        publish_one(services.mqtt_port, f"{prefix}/aq-1/telemetry", message)
        wait_for(
            lambda: (
                worker.metrics.registry.get_sample_value("smartby_ingest_readings_duplicate_total")
                == 2
            ),
            what="duplicates counted",
        )
    assert count(conn, "SELECT count(*) FROM readings") == 2


def test_status_messages_update_the_device(
    services: Services, conn: psycopg.Connection, ingest_settings, prefix: str
) -> None:
    """A retained `online`, then a JSON status with battery and RSSI."""
    register(conn, "aq-1")
    with running_worker(ingest_settings):
        publish_one(services.mqtt_port, f"{prefix}/aq-1/status", b"online")
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM devices WHERE online") == 1, what="online"
        )
        publish_one(
            services.mqtt_port,
            f"{prefix}/aq-1/status",
            orjson.dumps({"status": "offline", "battery": 3.61, "rssi": -71}),
        )
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM devices WHERE NOT online") == 1,
            what="offline",
        )
    row = conn.execute("SELECT online, battery, rssi, last_seen FROM devices").fetchone()
    assert row[:3] == (False, 3.61, -71.0)
    assert row[3] is not None


def test_the_worker_serves_its_prometheus_metrics(
    services: Services, conn: psycopg.Connection, prefix: str
) -> None:
    """A scrape of the worker's /metrics after one good and one bad message."""
    import urllib.request

    from stack.ports import free_port

    register(conn, "aq-1")
    port = free_port()
    settings = services.settings(
        mqtt_topic_prefix=prefix, ingest_metrics_port=port, ingest_batch_ms=20
    )
    with running_worker(settings):
        publish_one(services.mqtt_port, f"{prefix}/aq-1/telemetry", b'{"pm25": 1, "no2": 2}')
        publish_one(services.mqtt_port, f"{prefix}/nobody/telemetry", b'{"pm25": 1}')
        wait_for(lambda: count(conn, "SELECT count(*) FROM quarantine") == 1, what="quarantine")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
            text = response.read().decode()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['smartby_ingest_messages_total{outcome="stored"}'] == 1
    assert samples['smartby_ingest_messages_total{outcome="quarantined"}'] == 1
    assert samples["smartby_ingest_readings_written_total"] == 2
    assert samples['smartby_ingest_quarantined_total{reason="unknown_device"}'] == 1
    assert samples["smartby_ingest_batch_messages_count"] >= 1
    assert samples["smartby_ingest_commit_seconds_count"] >= 1
    assert samples["smartby_ingest_last_commit_timestamp_seconds"] == pytest.approx(
        time.time(), abs=60
    )
    assert "smartby_ingest_queue_depth" in samples
    assert samples["smartby_ingest_broker_connected"] == 1
