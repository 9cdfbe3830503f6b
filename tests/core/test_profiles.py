"""Device profiles on the vendors' documented payloads: which topics they claim, what
readings and radio health the payloads give, and what is refused, with which reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from core.profiles import (
    PROFILE_NAMES,
    BindingError,
    DeviceOptions,
    FieldTarget,
    Route,
    Router,
    check_binding,
    make_profile,
    resolve_field,
)
from core.readings import DecodeError, DecodeResult, numeric_text
from tests.fixtures.vendors import (
    CHIRPSTACK_OBJECT,
    CHIRPSTACK_STATUS,
    CHIRPSTACK_UPLINK,
    ESPHOME_STATE,
    TASMOTA_AIR,
    TASMOTA_PLUG,
    TASMOTA_PMS5003,
    TTS_UPLINK,
    TTS_UPLINK_UNDECODED,
)

OSLO = DeviceOptions(timezone=ZoneInfo("Europe/Oslo"))
NOW = datetime(2024, 6, 1, tzinfo=UTC).timestamp()


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def route(topic: str) -> Route:
    found = Router(PROFILE_NAMES, "smartby").route(topic)
    assert found is not None, topic
    return found


def decode(
    topic: str, payload: bytes | dict[str, object], options: DeviceOptions = OSLO
) -> DecodeResult:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    found = route(topic)
    return found.profile.decode(body, NOW, found, options)


def values(result: DecodeResult) -> dict[str, tuple[float, str | None]]:
    return {r.name: (r.value, r.unit) for r in result.readings}


# ------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("topic", "profile", "kind", "keys"),
    [
        ("smartby/aq-1/telemetry", "smartby", "telemetry", ("aq-1",)),
        ("smartby/aq-1/status", "smartby", "status", ("aq-1",)),
        ("smartby/aq-1/debug", "smartby", "unknown", ("aq-1",)),
        ("tele/tasmota_A1B2C3/SENSOR", "tasmota", "telemetry", ("tasmota_A1B2C3",)),
        ("tele/tasmota_A1B2C3/LWT", "tasmota", "status", ("tasmota_A1B2C3",)),
        ("kitchen/sensor/pm_2_5/state", "esphome", "telemetry", ("kitchen",)),
        ("kitchen/status", "esphome", "status", ("kitchen",)),
        ("v3/app1@ttn/devices/dev1/up", "ttn-v3", "telemetry", ("dev1",)),
        (
            "v3/app1@ttn/devices/eui-0004a30b001c0530/up",
            "ttn-v3",
            "telemetry",
            ("eui-0004a30b001c0530", "0004a30b001c0530"),
        ),
        (
            "application/17c82e96/device/0101010101010101/event/up",
            "chirpstack-v4",
            "telemetry",
            ("0101010101010101",),
        ),
        (
            "application/17c82e96/device/0A0B0C0D0E0F0A0B/event/status",
            "chirpstack-v4",
            "status",
            ("0a0b0c0d0e0f0a0b",),
        ),
    ],
)
def test_each_profile_claims_its_topics_and_names_the_device_from_them(
    topic: str, profile: str, kind: str, keys: tuple[str, ...]
) -> None:
    found = route(topic)
    assert (found.profile.name, found.kind, found.keys) == (profile, kind, keys)
    assert found.direct == (profile == "smartby")


@pytest.mark.parametrize(
    "topic",
    [
        "tele/x/STATE",  # Tasmota's device state, not telemetry
        "stat/x/RESULT",
        "kitchen/binary_sensor/door/state",
        "kitchen/sensor/temp/command",
        "$SYS/broker/uptime",
        "$SYS/status",
        "v3/app1@ttn/devices/dev1/join",
        "application/x/device/not-an-eui/event/up",
        "application/x/device/0101010101010101/event/join",
        "smartby//telemetry",
        "other/aq-1/telemetry",
    ],
)
def test_topics_of_no_profile_are_not_claimed(topic: str) -> None:
    assert Router(PROFILE_NAMES, "smartby").route(topic) is None


def test_only_enabled_profiles_claim_and_subscribe() -> None:
    router = Router(["smartby", "tasmota"], "p1")
    assert router.route("kitchen/status") is None
    assert [f.filter for f in router.filters()] == [
        "p1/+/telemetry",
        "p1/+/status",
        "tele/+/SENSOR",
        "tele/+/LWT",
    ]
    assert [f.telemetry for f in router.filters()] == [True, False, True, False]


# ------------------------------------------------------------------------- Tasmota


def test_tasmota_sensors_are_read_by_their_path_in_local_time() -> None:
    result = decode("tele/air/SENSOR", TASMOTA_AIR)
    assert values(result) == {
        "SDS0X1/PM2.5": (5.1, None),
        "SDS0X1/PM10": (12.3, None),
        "BME280/Temperature": (-3.4, "Cel"),
        "BME280/Humidity": (81.0, None),
        "BME280/DewPoint": (-6.1, "Cel"),
        "BME280/Pressure": (1002.3, "hPa"),
    }
    # 12:00 in Oslo on 1 January is 11:00 UTC
    assert {r.time for r in result.readings} == {at("2024-01-01T11:00:00+00:00")}
    assert result.rejected == []
    assert not result.anchored


def test_tasmota_time_with_its_offset_needs_no_zone_and_the_repeated_hour_is_the_first() -> None:
    offset = {**TASMOTA_AIR, "Time": "2024-01-01T12:00:00+01:00"}
    [reading, *_] = decode("tele/air/SENSOR", offset, DeviceOptions()).readings
    assert reading.time == at("2024-01-01T11:00:00+00:00")
    # 27 Oct 2024: clocks go back at 03:00 CEST; 02:30 happens twice, the first is CEST
    repeated = {**TASMOTA_AIR, "Time": "2024-10-27T02:30:00"}
    [reading, *_] = decode("tele/air/SENSOR", repeated).readings
    assert reading.time == at("2024-10-27T02:30:00+02:00")
    with pytest.raises(DecodeError) as refused:
        decode("tele/air/SENSOR", TASMOTA_AIR, DeviceOptions())
    assert refused.value.reason == "bad_time"


def test_tasmota_units_it_cannot_express_in_senml_are_refused_per_field() -> None:
    fahrenheit = {**TASMOTA_AIR, "TempUnit": "F", "PressureUnit": "mmHg"}
    result = decode("tele/air/SENSOR", fahrenheit)
    assert set(values(result)) == {"SDS0X1/PM2.5", "SDS0X1/PM10", "BME280/Humidity"}
    assert {(r.name, r.reason) for r in result.rejected} == {
        ("BME280/Temperature", "bad_unit"),
        ("BME280/DewPoint", "bad_unit"),
        ("BME280/Pressure", "bad_unit"),
    }
    assert "SetOption8 0" in result.rejected[0].detail


def test_tasmota_plug_and_pms5003_text_members_are_rejected_for_ingest_to_sort_out() -> None:
    plug = decode("tele/plug/SENSOR", TASMOTA_PLUG)
    assert values(plug)["ENERGY/Total"] == (14.834, None)
    assert [(r.name, r.reason) for r in plug.rejected] == [("ENERGY/TotalStartTime", "non_numeric")]
    pms = decode("tele/pms/SENSOR", TASMOTA_PMS5003)
    assert values(pms)["PMS5003/PM2.5"] == (2.0, None)
    assert len(pms.readings) == 14


def test_tasmota_numbers_written_as_text_count_unless_the_device_says_otherwise() -> None:
    text = {"Time": "2024-01-01T12:00:00", "SDS0X1": {"PM2.5": "4.2", "PM10": "n/a"}}
    result = decode("tele/air/SENSOR", text)
    assert values(result) == {"SDS0X1/PM2.5": (4.2, None)}
    assert [r.reason for r in result.rejected] == ["non_numeric"]
    strict = DeviceOptions(timezone=ZoneInfo("UTC"), numeric_strings=False)
    assert [r.reason for r in decode("tele/air/SENSOR", text, strict).rejected] == [
        "non_numeric",
        "non_numeric",
    ]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"Online", "undecodable"),
        (b"[1, 2]", "bad_structure"),
        (b'{"Time": "2024-01-01T12:00:00"}', "empty"),
        (b'{"Time": "yesterday", "X": {"PM10": 1}}', "bad_time"),
    ],
)
def test_malformed_tasmota_sensor_messages_are_refused_with_a_reason(
    payload: bytes, reason: str
) -> None:
    with pytest.raises(DecodeError) as refused:
        decode("tele/air/SENSOR", payload)
    assert refused.value.reason == reason


def test_tasmota_lwt_is_the_devices_availability() -> None:
    lwt = route("tele/air/LWT")
    assert lwt.profile.status(b"Online", NOW).online is True
    assert lwt.profile.status(b"Offline", NOW).online is False
    with pytest.raises(DecodeError) as refused:
        lwt.profile.status(b'{"on": 1}', NOW)
    assert refused.value.reason == "bad_status"


# ------------------------------------------------------------------------- ESPHome


def test_esphome_states_are_time_less_numbers_named_by_their_object_id() -> None:
    result = decode("kitchen/sensor/pm_2_5/state", ESPHOME_STATE)
    assert values(result) == {"pm_2_5": (21.5, None)}
    assert result.anchored
    assert result.readings[0].time == NOW
    assert [r.reason for r in decode("kitchen/sensor/pm_2_5/state", b"nan").rejected] == [
        "no_value"
    ]
    assert [r.reason for r in decode("kitchen/sensor/pm_2_5/state", b"ON").rejected] == [
        "non_numeric"
    ]
    with pytest.raises(DecodeError) as refused:
        decode("kitchen/sensor/pm_2_5/state", b"\xff\xfe")
    assert refused.value.reason == "undecodable"
    status = route("kitchen/status")
    assert status.profile.status(b"online", NOW).online is True
    assert status.profile.status(b"offline", NOW).online is False


# ------------------------------------------------------------------------ LoRaWAN


def test_tts_uplink_readings_are_the_decoded_payload_and_the_radio_is_health() -> None:
    result = decode("v3/app1@ttn/devices/dev1/up", TTS_UPLINK)
    assert values(result) == {"temperature": (1.0, None), "luminosity": (0.64, None)}
    when = at("2020-02-12T15:15:45.789585+00:00")  # uplink_message.received_at
    assert [r.time for r in result.readings] == [pytest.approx(when)] * 2
    assert result.health is not None
    assert (result.health.rssi, result.health.snr, result.health.gateways) == (-35, 5, 1)
    assert not result.anchored


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (TTS_UPLINK_UNDECODED, "no_decoded_payload"),
        ({**TTS_UPLINK, "simulated": True}, "simulated_uplink"),
        ({**TTS_UPLINK, "end_device_ids": {"device_id": "dev2"}}, "identity_mismatch"),
        ({"end_device_ids": {"device_id": "dev1"}}, "bad_structure"),
        (b"not json", "undecodable"),
    ],
)
def test_unusable_tts_uplinks_are_refused_with_a_reason(
    payload: bytes | dict[str, object], reason: str
) -> None:
    with pytest.raises(DecodeError) as refused:
        decode("v3/app1@ttn/devices/dev1/up", payload)
    assert refused.value.reason == reason


def test_chirpstack_uplink_object_readings_and_best_gateway() -> None:
    event = {
        **CHIRPSTACK_UPLINK,
        "object": CHIRPSTACK_OBJECT,
        "rxInfo": [*CHIRPSTACK_UPLINK["rxInfo"], {"gatewayId": "g2", "rssi": -110, "snr": -3}],
    }
    result = decode("application/x/device/0101010101010101/event/up", event)
    assert values(result) == {
        "pm2_5": (7.2, None),
        "pm10": (11.0, None),
        "batteryVoltage": (3.61, None),
    }
    assert result.readings[0].time == pytest.approx(at("2022-07-18T09:34:15.775023+00:00"))
    assert result.health is not None
    assert (result.health.rssi, result.health.snr, result.health.gateways) == (-36, 10.5, 2)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (CHIRPSTACK_UPLINK, "no_decoded_payload"),  # the documented example has no codec
        (
            {**CHIRPSTACK_UPLINK, "object": {}, "deviceInfo": {"devEui": "0202020202020202"}},
            "identity_mismatch",
        ),
        ({**CHIRPSTACK_UPLINK, "object": {}, "time": "soon"}, "bad_time"),
    ],
)
def test_unusable_chirpstack_uplinks_are_refused_with_a_reason(
    payload: dict[str, object], reason: str
) -> None:
    with pytest.raises(DecodeError) as refused:
        decode("application/x/device/0101010101010101/event/up", payload)
    assert refused.value.reason == reason


def test_chirpstack_status_event_is_a_battery_level() -> None:
    status = route("application/x/device/0101010101010101/event/status")
    report = status.profile.status(json.dumps(CHIRPSTACK_STATUS).encode(), NOW)
    assert report.battery == 88.3
    assert report.health is not None
    assert report.health.battery_pct == 88.3
    with pytest.raises(DecodeError) as refused:
        status.profile.status(b'{"margin": 3}', NOW)
    assert refused.value.reason == "bad_status"


# ------------------------------------------------------------- bindings and fields


def test_a_binding_is_checked_and_normalised() -> None:
    eui = check_binding("chirpstack-v4", "0A0B0C0D0E0F0A0B")
    assert eui.key == "0a0b0c0d0e0f0a0b"
    tasmota = check_binding(
        "tasmota",
        "tasmota_A1B2C3",
        {"SDS0X1/PM2.5": "pm25", "Analog/A0": None, "vbat": {"health": "battery", "unit": "mV"}},
        "Europe/Oslo",
    )
    assert tasmota.fields == {
        "sds0x1/pm2.5": FieldTarget(metric="pm25"),
        "analog/a0": FieldTarget(),
        "vbat": FieldTarget(health="battery", unit="mV"),
    }
    assert tasmota.options_json() == {"timezone": "Europe/Oslo"}


@pytest.mark.parametrize(
    ("profile", "key", "fields", "timezone", "problem"),
    [
        ("zigbee", "x", None, None, "unknown profile 'zigbee'"),
        ("smartby", "x", None, None, "known by its device id"),
        ("tasmota", None, None, None, "needs its Tasmota topic"),
        ("tasmota", "a/b", None, None, "one MQTT topic level"),
        ("chirpstack-v4", "0101", None, None, "16 hexadecimal digits"),
        ("esphome", "node", None, "Europe/Oslo", "carry their offset"),
        ("tasmota", "t", None, "Mars/Olympus", "unknown time zone"),
        ("tasmota", "t", {"pm": "PM 2.5"}, None, "is not a metric key"),
        ("tasmota", "t", {"pm": {"metric": "pm25", "unit": "ugm3"}}, None, "not a SenML unit"),
        ("tasmota", "t", {"b": {"health": "battery", "unit": "Cel"}}, None, "volts"),
        ("tasmota", "t", {"b": {"health": "mood"}}, None, "not one of battery"),
        ("tasmota", "t", {"P": "pm25", "p": "pm10"}, None, "mapped twice"),
    ],
)
def test_a_binding_that_cannot_work_is_refused_with_the_reason(
    profile: str, key: str | None, fields: object, timezone: str | None, problem: str
) -> None:
    with pytest.raises(BindingError, match=problem):
        check_binding(profile, key, fields, timezone)


def test_a_field_resolves_through_the_device_then_the_aliases_path_before_last_level() -> None:
    aliases = {
        "pm2.5": FieldTarget(metric="pm25"),
        "energy/total": FieldTarget(metric="energy", unit="kWh"),
        "total": FieldTarget(),
    }
    device = {"total": FieldTarget(metric="vehicle_count")}
    assert resolve_field("SDS0X1/PM2.5", {}, aliases) == FieldTarget(metric="pm25")
    assert resolve_field("ENERGY/Total", {}, aliases) == FieldTarget(metric="energy", unit="kWh")
    assert resolve_field("ENERGY/Total", device, aliases) == FieldTarget(metric="vehicle_count")
    assert resolve_field("urn:dev:mac:0024:PM2.5", {}, aliases) == FieldTarget(metric="pm25")
    assert resolve_field("no2", {}, aliases) is None  # a metric key itself


@pytest.mark.parametrize(
    ("text", "value"),
    [("4.2", 4.2), (" -1e3 ", -1000.0), ("+.5", 0.5), ("7", 7.0)],
)
def test_numbers_written_as_text(text: str, value: float) -> None:
    assert numeric_text(text) == value


@pytest.mark.parametrize("text", ["nan", "Infinity", "0x1A", "1_000", "", "4,2", "1e", 4.2])
def test_what_is_not_a_number_written_as_text(text: object) -> None:
    assert numeric_text(text) is None


def test_every_profile_has_a_name_and_its_own_topics() -> None:
    profiles = [make_profile(name) for name in PROFILE_NAMES]
    assert [p.name for p in profiles] == list(PROFILE_NAMES)
    filters = [f.filter for p in profiles for f in p.filters()]
    assert len(filters) == len(set(filters))


def test_each_profile_says_what_its_device_publishes_on_the_platforms_broker() -> None:
    """The topics a device's broker role allows (`devices.broker_plan`): the smartby
    profile's are `core.broker.device_topics`; a LoRaWAN device publishes none."""
    from core.broker import STA_TOPICS, device_topics

    assert list(make_profile("smartby", "city").device_topics("aq-1")) == device_topics(
        "city", "aq-1"
    )
    assert make_profile("tasmota").device_topics("tasmota_A1B2C3") == (
        "tele/tasmota_A1B2C3/SENSOR",
        "tele/tasmota_A1B2C3/LWT",
    )
    assert make_profile("esphome").device_topics("balcony") == (
        "balcony/sensor/+/state",
        "balcony/status",
    )
    assert make_profile("ttn-v3").device_topics("dev1") == ()
    assert make_profile("chirpstack-v4").device_topics("0101010101010101") == ()
    # every topic a device may publish is one its profile routes back to that key
    for name, key in (("smartby", "aq-1"), ("tasmota", "t1"), ("esphome", "n1")):
        profile = make_profile(name)
        for topic in profile.device_topics(key):
            route = profile.route(topic.replace("+", "pm25").split("/"))
            assert route is not None, topic
            assert route.keys[0] == key, topic
    esphome = make_profile("esphome")
    for reserved in (STA_TOPICS.split("/")[0], "$SYS", "$CONTROL", "$share"):
        with pytest.raises(ValueError, match="a topic level the platform owns"):
            esphome.key(reserved)
