"""Devices of every profile publish their vendors' documented payloads to a real broker;
the ingest worker stores each reading with the right metric, unit and time, keeps radio
metadata as device health, and quarantines every malformed variant with its reason."""

from __future__ import annotations

import json
import time

import orjson
import psycopg
import pytest

from core.broker import LOCAL_INGEST_CLIENT_ID
from devices.broker_sync import sync_platform
from stack.mosquitto import MosquittoBroker
from tests.fixtures.ingest import count, running_worker, wait_for
from tests.fixtures.mqtt import publish_many, publish_one
from tests.fixtures.profiles import health, quarantine, readings, register_device
from tests.fixtures.secure import SecureBroker
from tests.fixtures.services import Services
from tests.fixtures.vendors import (
    CHIRPSTACK_OBJECT,
    CHIRPSTACK_STATUS,
    CHIRPSTACK_UPLINK,
    TASMOTA_AIR,
    TASMOTA_PLUG,
    TASMOTA_PMS5003,
    TTS_UPLINK,
    TTS_UPLINK_UNDECODED,
    chirpstack,
    tasmota,
    tts,
)

EUI = "70b3d57ed0052f3a"


@pytest.fixture
def settings_of(services: Services, db_url: str, broker: MosquittoBroker):
    return services.settings(
        mqtt_port=broker.port,
        mqtt_topic_prefix="smartby",
        ingest_metrics_port=0,
        ingest_batch_ms=20,
    )


def test_tasmota_air_station_plug_and_pms5003_are_stored_by_metric_in_utc(
    conn: psycopg.Connection, broker: MosquittoBroker, settings_of
) -> None:
    """Three Tasmota devices send their SENSOR messages (local clock, no offset) and
    their retained LWT; the readings land as metrics, the rest is left out on purpose."""
    register_device(conn, "aq-tasmota", "tasmota", "tasmota_A1B2C3")
    register_device(conn, "plug-1", "tasmota", "plug_kitchen", kind="energy")
    register_device(conn, "aq-pms", "tasmota", "pms_1", timezone="UTC")
    t0 = float(int(time.time()) - 120)
    with running_worker(settings_of) as worker:
        publish_one(broker.port, "tele/tasmota_A1B2C3/SENSOR", tasmota(TASMOTA_AIR, t0))
        publish_one(broker.port, "tele/tasmota_A1B2C3/LWT", b"Online")
        publish_one(broker.port, "tele/plug_kitchen/SENSOR", tasmota(TASMOTA_PLUG, t0))
        publish_one(broker.port, "tele/pms_1/SENSOR", tasmota(TASMOTA_PMS5003, t0, "UTC"))
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 13, what="13 readings")
        wait_for(
            lambda: count(conn, "SELECT count(*) FROM devices WHERE online") == 1, what="online"
        )
        outcomes = worker.metrics.registry
    assert readings(conn, "aq-tasmota") == {
        "humidity": [(t0, 81.0)],
        "pm10": [(t0, 12.3)],
        "pm25": [(t0, 5.1)],
        "pressure": [(t0, 1002.3)],
        "temperature": [(t0, -3.4)],
    }
    assert readings(conn, "plug-1") == {
        "current": [(t0, 0.134)],
        "energy": [(t0, 14.834)],
        "power": [(t0, 23.0)],
        "voltage": [(t0, 230.0)],
    }
    assert readings(conn, "aq-pms") == {
        "humidity": [(t0, 32.1)],
        "pm10": [(t0, 2.0)],
        "pm25": [(t0, 2.0)],
        "temperature": [(t0, 24.7)],
    }
    assert quarantine(conn) == []  # DewPoint, TotalStartTime, PB0.3 …: declared, dropped
    assert outcomes.get_sample_value("smartby_ingest_messages_total", {"outcome": "stored"}) == 3


def test_esphome_states_are_stored_at_reception_and_unknown_nodes_quarantined(
    conn: psycopg.Connection, broker: MosquittoBroker, settings_of
) -> None:
    """An ESPHome node publishes one state per sensor, time-less; a node nobody
    registered is quarantined as unknown_device instead of ignored."""
    register_device(
        conn,
        "aq-esp",
        "esphome",
        "balcony",
        fields={"wifi_signal": None, "particulate_matter_2_5": "pm25"},
    )
    with running_worker(settings_of):
        sent = time.time()
        publish_many(
            broker.port,
            [
                ("balcony/status", b"online"),
                ("balcony/sensor/particulate_matter_2_5/state", b"8.4"),
                ("balcony/sensor/pm_10/state", b"15"),
                ("balcony/sensor/temperature/state", b"-2.50"),
                ("balcony/sensor/wifi_signal/state", b"-67"),
                ("garage/sensor/temperature/state", b"4.0"),
            ],
        )
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 3, what="3 readings")
        wait_for(lambda: count(conn, "SELECT count(*) FROM quarantine") == 1, what="quarantine")
        wait_for(lambda: count(conn, "SELECT count(*) FROM devices WHERE online") == 1, what="up")
    stored = readings(conn, "aq-esp")
    assert {metric: [v for _, v in rows] for metric, rows in stored.items()} == {
        "pm10": [15.0],
        "pm25": [8.4],
        "temperature": [-2.5],
    }
    assert all(sent - 1 <= t <= time.time() for rows in stored.values() for t, _ in rows)
    [(topic, reason, device, detail)] = quarantine(conn)
    assert (topic, reason, device) == ("garage/sensor/temperature/state", "unknown_device", None)
    assert "esphome ESPHome node name 'garage'" in detail


def test_tts_uplinks_store_the_decoded_payload_and_the_radio_as_device_health(
    conn: psycopg.Connection, broker: MosquittoBroker, settings_of
) -> None:
    """The Things Stack's documented uplink, bridged into the broker: the decoded
    payload becomes readings at the network server's reception time, RSSI, SNR and
    battery become device health; a device registered by its DevEUI is found through
    TTS's default ``eui-`` device id."""
    register_device(conn, "lora-1", "ttn-v3", "dev1", fields={"luminosity": None})
    register_device(conn, "lora-2", "ttn-v3", EUI)
    t0 = time.time() - 30
    with running_worker(settings_of):
        publish_one(broker.port, "v3/app1@ttn/devices/dev1/up", tts(TTS_UPLINK, t0))
        battery = tts(
            TTS_UPLINK,
            t0,
            device=f"eui-{EUI}",
            decoded_payload={"pm2_5": 3.2, "battery": 3.58},
        )
        publish_one(broker.port, f"v3/app1@ttn/devices/eui-{EUI}/up", battery)
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 2, what="2 readings")
        wait_for(lambda: count(conn, "SELECT count(*) FROM device_health") == 2, what="health")
    assert readings(conn, "lora-1") == {"temperature": [(pytest.approx(t0, abs=1e-3), 1.0)]}
    assert readings(conn, "lora-2") == {"pm25": [(pytest.approx(t0, abs=1e-3), 3.2)]}
    assert health(conn, "lora-1") == [(pytest.approx(t0, abs=1e-3), -35.0, 5.0, 1, None, None)]
    assert health(conn, "lora-2") == [(pytest.approx(t0, abs=1e-3), -35.0, 5.0, 1, 3.58, None)]
    row = conn.execute("SELECT rssi, battery FROM devices WHERE id = 'lora-2'").fetchone()
    assert row == (-35.0, 3.58)
    assert quarantine(conn) == []


def test_chirpstack_uplinks_and_status_events_store_readings_and_battery(
    conn: psycopg.Connection, broker: MosquittoBroker, settings_of
) -> None:
    """ChirpStack v4's documented up event (with a codec's object) and status event."""
    register_device(conn, "lora-cs", "chirpstack-v4", EUI.upper())
    t0 = time.time() - 30
    base = f"application/17c82e96-be03-4f38-aef3-f83d48582d97/device/{EUI}/event"
    with running_worker(settings_of):
        publish_one(
            broker.port,
            f"{base}/up",
            chirpstack(CHIRPSTACK_UPLINK, t0, EUI, object=CHIRPSTACK_OBJECT),
        )
        publish_one(broker.port, f"{base}/status", chirpstack(CHIRPSTACK_STATUS, t0 + 5, EUI))
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 2, what="2 readings")
        wait_for(lambda: count(conn, "SELECT count(*) FROM device_health") == 2, what="health")
    assert readings(conn, "lora-cs") == {
        "pm10": [(pytest.approx(t0, abs=1e-3), 11.0)],
        "pm25": [(pytest.approx(t0, abs=1e-3), 7.2)],
    }
    assert health(conn, "lora-cs") == [
        (pytest.approx(t0, abs=1e-3), -36.0, 10.5, 1, 3.61, None),
        (pytest.approx(t0 + 5, abs=1e-3), None, None, None, None, 88.3),
    ]
    assert quarantine(conn) == []


def test_smartby_devices_gain_aliases_and_numeric_strings_where_they_say_so(
    conn: psycopg.Connection, broker: MosquittoBroker, settings_of
) -> None:
    """``{"PM2.5": …}`` is pm25 for every device; ``{"pm25": "4.2"}`` is a number for a
    device registered with numeric strings, and non_numeric for one without."""
    register_device(conn, "aq-text", numeric_strings=True)
    register_device(conn, "aq-strict")
    t0 = int(time.time()) - 60
    with running_worker(settings_of):
        publish_many(
            broker.port,
            [
                ("smartby/aq-text/telemetry", orjson.dumps({"time": t0, "pm25": "4.2"})),
                ("smartby/aq-strict/telemetry", orjson.dumps({"time": t0, "pm25": "4.2"})),
                ("smartby/aq-strict/telemetry", orjson.dumps({"time": t0, "PM2.5": 6.5, "P1": 9})),
            ],
        )
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 3, what="3 readings")
        wait_for(lambda: count(conn, "SELECT count(*) FROM quarantine") == 1, what="quarantine")
    assert readings(conn, "aq-text") == {"pm25": [(t0, 4.2)]}
    assert readings(conn, "aq-strict") == {"pm10": [(t0, 9.0)], "pm25": [(t0, 6.5)]}
    assert [(reason, device) for _, reason, device, _ in quarantine(conn)] == [
        ("non_numeric", "aq-strict")
    ]


MALFORMED = {
    "tasmota": [
        ("tele/tasmota_A1B2C3/SENSOR", b"Online", "undecodable"),
        ("tele/tasmota_A1B2C3/SENSOR", b'["PM2.5", 4]', "bad_structure"),
        (
            "tele/tasmota_A1B2C3/SENSOR",
            b'{"Time": "2024-13-45T99:00:00", "X": {"PM10": 1}}',
            "bad_time",
        ),
        (
            "tele/tasmota_A1B2C3/SENSOR",
            b'{"SI7021": {"Temperature": 20.1}, "TempUnit": "F"}',
            "bad_unit",
        ),
        ("tele/tasmota_A1B2C3/LWT", b"Maybe", "bad_status"),
        ("tele/tasmota_FFFFFF/SENSOR", b'{"X": {"PM10": 1}}', "unknown_device"),
        ("smartby/aq-tasmota/telemetry", b'{"pm10": 1}', "wrong_profile"),
    ],
    "esphome": [
        ("balcony/sensor/temperature/state", b"ON", "non_numeric"),
        ("balcony/sensor/temperature/state", b"nan", "no_value"),
        ("balcony/sensor/radon/state", b"40", "unknown_metric"),
        ("balcony/status", b"sleeping", "bad_status"),
        ("attic/sensor/temperature/state", b"20", "unknown_device"),
    ],
    "ttn-v3": [
        ("v3/app1@ttn/devices/dev1/up", "undecoded", "no_decoded_payload"),
        ("v3/app1@ttn/devices/dev1/up", "simulated", "simulated_uplink"),
        ("v3/app1@ttn/devices/dev1/up", "other device", "identity_mismatch"),
        ("v3/app1@ttn/devices/dev1/up", b"\x00\x01", "undecodable"),
        ("v3/app1@ttn/devices/dev9/up", "uplink", "unknown_device"),
    ],
    "chirpstack-v4": [
        (f"application/a/device/{EUI}/event/up", "no object", "no_decoded_payload"),
        (f"application/a/device/{EUI}/event/up", "other device", "identity_mismatch"),
        (f"application/a/device/{EUI}/event/up", "text object", "non_numeric"),
        (f"application/a/device/{EUI}/event/status", b'{"margin": 4}', "bad_status"),
        ("application/a/device/0000000000000001/event/up", "object", "unknown_device"),
    ],
}


def _payload(profile: str, payload: bytes | str, t0: float) -> bytes:
    """The named malformed variant of a documented payload."""
    if isinstance(payload, bytes):
        return payload
    if profile == "ttn-v3":
        variants = {
            "undecoded": tts(TTS_UPLINK_UNDECODED, t0),
            "simulated": json.dumps({**json.loads(tts(TTS_UPLINK, t0)), "simulated": True}),
            "other device": tts(TTS_UPLINK, t0, device="dev2"),
            "uplink": tts(TTS_UPLINK, t0, device="dev9"),
        }
    else:
        variants = {
            "no object": chirpstack(CHIRPSTACK_UPLINK, t0, EUI),
            "other device": chirpstack(
                CHIRPSTACK_UPLINK, t0, "0202020202020202", object=CHIRPSTACK_OBJECT
            ),
            "text object": chirpstack(CHIRPSTACK_UPLINK, t0, EUI, object={"pm10": "high"}),
            "object": chirpstack(
                CHIRPSTACK_UPLINK, t0, "0000000000000001", object=CHIRPSTACK_OBJECT
            ),
        }
    chosen = variants[payload]
    return chosen if isinstance(chosen, bytes) else chosen.encode()


@pytest.mark.parametrize("profile", sorted(MALFORMED))
def test_malformed_variants_of_each_profile_are_quarantined_with_their_reason(
    profile: str, conn: psycopg.Connection, broker: MosquittoBroker, settings_of
) -> None:
    """Every broken variant goes to quarantine with its own reason, and a good message
    sent after them is still stored."""
    register_device(conn, "aq-tasmota", "tasmota", "tasmota_A1B2C3")
    register_device(conn, "aq-esp", "esphome", "balcony")
    register_device(conn, "lora-1", "ttn-v3", "dev1", fields={"luminosity": None})
    register_device(conn, "lora-cs", "chirpstack-v4", EUI)
    t0 = time.time() - 30
    bad = MALFORMED[profile]
    good = {
        "tasmota": ("tele/tasmota_A1B2C3/SENSOR", tasmota(TASMOTA_AIR, t0)),
        "esphome": ("balcony/sensor/temperature/state", b"3.5"),
        "ttn-v3": ("v3/app1@ttn/devices/dev1/up", tts(TTS_UPLINK, t0)),
        "chirpstack-v4": (
            f"application/a/device/{EUI}/event/up",
            chirpstack(CHIRPSTACK_UPLINK, t0, EUI, object=CHIRPSTACK_OBJECT),
        ),
    }[profile]
    with running_worker(settings_of):
        publish_many(broker.port, [(topic, _payload(profile, p, t0)) for topic, p, _ in bad])
        publish_one(broker.port, *good)
        wait_for(
            lambda: (
                count(conn, "SELECT count(*) FROM quarantine") == len(bad)
                and count(conn, "SELECT count(*) FROM readings") > 0
            ),
            what=f"{len(bad)} quarantined and the good message stored",
        )
    assert [(topic, reason) for topic, reason, _, _ in quarantine(conn)] == [
        (topic, reason) for topic, _, reason in bad
    ]


@pytest.mark.allow_logged_errors
def test_a_broker_whose_roles_predate_profiles_still_delivers_smartby_telemetry(
    services: Services,
    conn: psycopg.Connection,
    secure: SecureBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dynamic-security broker whose ingest role was written for the smartby profile
    only (a broker-config older than profiles, or SMARTBY_INGEST_PROFILES narrower there
    than at the worker) refuses the other profiles' subscriptions (SUBACK 0x87, MQTT v5
    §3.9.3): the worker says which, and goes on storing what it may read."""
    import logging
    from dataclasses import replace

    narrow = replace(secure.accounts, profiles=("smartby",))
    sync_platform(secure.admin, conn, narrow)
    try:
        secret = register_device(conn, "aq-1")
        secure.push(conn, ["aq-1"], {"aq-1": secret})
        settings = secure.worker_settings(services)
        with (
            caplog.at_level(logging.ERROR, "ingest.worker"),
            running_worker(settings, LOCAL_INGEST_CLIENT_ID),
        ):
            publish_one(
                secure.port,
                "smartby/aq-1/telemetry",
                b'{"pm25": 3.5}',
                username="aq-1",
                password=secret,
                client_id="aq-1",
            )
            wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 1, what="reading")
    finally:
        secure.sync(conn)
    messages = [record.getMessage() for record in caplog.records]
    [refused] = [text for text in messages if "refused the subscriptions" in text]
    assert "tele/+/SENSOR (Not authorized)" in refused
    assert "smartby/+/telemetry" not in refused
