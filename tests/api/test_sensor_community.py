"""sensor.community's "send to own API" (issue 14, item 3), as the airRohr firmware
sends it (opendata-stuttgart/sensors-software, ``sendDataToOptionalApis``): the sensor
named by X-Sensor, HTTP Basic with the device's secret, values as strings, pressure in
pascals, and the Wi-Fi signal as device health."""

from __future__ import annotations

import time

import psycopg
import pytest

from core.sensor_community import convert
from tests.fixtures.push import PushClientFactory, add_pushing_device, basic

SENSOR = "esp8266-12345678"
#: what the firmware (NRZ-2024-134-B5) posts for an SDS011 and a BME280, byte for byte:
#: ``{"esp8266id": "<chip id>", `` before its own document, String(float) values
FIRMWARE_BODY = (
    b'{"esp8266id": "12345678", "software_version": "NRZ-2024-134-B5", "sensordatavalues":['
    b'{"value_type":"SDS_P1","value":"12.30"},{"value_type":"SDS_P2","value":"5.10"},'
    b'{"value_type":"BME280_temperature","value":"-3.40"},'
    b'{"value_type":"BME280_pressure","value":"100230.00"},'
    b'{"value_type":"BME280_humidity","value":"81.00"},'
    b'{"value_type":"samples","value":"734562"},{"value_type":"min_micro","value":"28"},'
    b'{"value_type":"max_micro","value":"20051"},{"value_type":"interval","value":"145000"},'
    b'{"value_type":"signal","value":"-71"}]}'
)


def firmware_headers(secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Sensor": SENSOR,
        "X-MAC-ID": "esp8266-a4cf12d3e4f5",
        "User-Agent": "NRZ-2024-134-B5/12345678/a4cf12d3e4f5",
        **basic(SENSOR, secret),
    }


def test_the_document_becomes_senml_of_our_metrics() -> None:
    pack = convert(FIRMWARE_BODY)
    assert pack.records == [
        {"n": "pm10", "u": "ug/m3", "v": 12.3},
        {"n": "pm25", "u": "ug/m3", "v": 5.1},
        {"n": "temperature", "u": "Cel", "v": -3.4},
        {"n": "pressure", "u": "Pa", "v": 100230.0},
        {"n": "humidity", "u": "%RH", "v": 81.0},
    ]
    assert pack.entries == [0, 1, 2, 3, 4]
    assert (pack.rssi, pack.chip_id) == (-71.0, "12345678")


def test_a_firmware_post_is_stored_with_the_right_metric_unit_and_time(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    """The firmware's post: five readings at the time it arrived, pressure in hPa, the
    signal as the device's RSSI, the loop statistics left out (not quarantined)."""
    secret = add_pushing_device(conn, SENSOR)
    client = push_client()
    before = time.time()
    answer = client.post(
        "/v1/ingest/sensor-community", content=FIRMWARE_BODY, headers=firmware_headers(secret)
    )
    after = time.time()
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"device_id": SENSOR, "stored": 5, "rejected": 0}
    stored = {
        metric: (value, unit, when)
        for metric, value, unit, when in conn.execute(
            "SELECT s.metric, r.value, m.unit, extract(epoch FROM r.time)::float8"
            " FROM readings r JOIN series s ON s.id = r.series_id"
            " JOIN metrics m ON m.key = s.metric WHERE s.device_id = %s",
            (SENSOR,),
        )
    }
    assert {m: (pytest.approx(v), u) for m, (v, u, _) in stored.items()} == {
        "pm10": (12.3, "ug/m3"),
        "pm25": (5.1, "ug/m3"),
        "temperature": (-3.4, "Cel"),
        "pressure": (1002.3, "hPa"),  # sent as 100230.00 Pa
        "humidity": (81.0, "%RH"),
    }
    assert all(before - 0.001 <= when <= after for _, _, when in stored.values())
    assert conn.execute("SELECT rssi FROM devices WHERE id = %s", (SENSOR,)).fetchone() == (-71,)
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)


def test_an_unknown_value_type_is_named_by_its_entry_and_quarantined(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    secret = add_pushing_device(conn, SENSOR)
    client = push_client()
    body = (
        b'{"esp8266id": "12345678", "software_version": "NRZ-2024-134-B5", "sensordatavalues":['
        b'{"value_type":"samples","value":"734562"},{"value_type":"SDS_P1","value":"12.30"},'
        b'{"value_type":"signal","value":"-70"},{"value_type":"SCD30_co2_ppm","value":"412"}]}'
    )
    answer = client.post(
        "/v1/ingest/sensor-community", content=body, headers=firmware_headers(secret)
    )
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert (problem["record"], problem["reason"], problem["stored"]) == (3, "unknown_metric", 1)
    topic, payload = conn.execute("SELECT topic, payload FROM quarantine").fetchone()
    assert topic == f"http:/v1/ingest/sensor-community ({SENSOR})"
    assert bytes(payload) == body  # the firmware's own document, not our SenML


def test_the_sensor_must_prove_its_secret(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    add_pushing_device(conn, SENSOR)
    client = push_client()
    wrong = client.post(
        "/v1/ingest/sensor-community", content=FIRMWARE_BODY, headers=firmware_headers("nope")
    )
    assert wrong.status_code == 401
    nameless = {**firmware_headers("nope")}
    del nameless["X-Sensor"], nameless["Authorization"]
    assert (
        client.post("/v1/ingest/sensor-community", content=FIRMWARE_BODY, headers=nameless)
    ).status_code == 401
    assert conn.execute("SELECT count(*) FROM readings").fetchone() == (0,)


def test_a_document_that_is_not_the_firmware_format_is_400(
    push_client: PushClientFactory, conn: psycopg.Connection
) -> None:
    secret = add_pushing_device(conn, SENSOR)
    client = push_client()
    answer = client.post(
        "/v1/ingest/sensor-community", content=b'{"P1": 3}', headers=firmware_headers(secret)
    )
    assert answer.status_code == 400
    assert answer.json()["reason"] == "bad_document"
    assert conn.execute("SELECT reason FROM quarantine").fetchone() == ("bad_document",)
