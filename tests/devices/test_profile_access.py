"""Issue 14 item 5: every device profile's topics have their roles in the broker's
dynamic security plugin.  On the real broker (`tests.fixtures.secure`): a device of each
MQTT profile publishes its own topics and nobody else's, subscribes to nothing (its own
topics and another device's included), a LoRaWAN device publishes nothing on the
platform's broker; the ingest account subscribes to exactly the profiles' filters, and a
worker on that broker stores what Tasmota and ESPHome devices send."""

from __future__ import annotations

import logging
import time

import psycopg
import pytest

from core.broker import LOCAL_INGEST_CLIENT_ID, ingest_filters
from devices.registry import DeviceRecord, upsert_device
from tests.fixtures.ingest import count, running_worker, wait_for
from tests.fixtures.network_server import (
    NetworkServer,
    publish_as_network_server,
    running_service,
    source,
)
from tests.fixtures.profiles import readings, register_device
from tests.fixtures.secure import PREFIX, SecureBroker, close, login, publish, subscribe
from tests.fixtures.services import Services
from tests.fixtures.vendors import CHIRPSTACK_OBJECT, CHIRPSTACK_UPLINK, chirpstack

NOT_AUTHORIZED = 0x87
NO_MATCHING_SUBSCRIBERS = 0x10
GRANTED_QOS_1 = 1

#: device id -> (profile, key, the topics it publishes)
DEVICES: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "aq-1": ("smartby", None, (f"{PREFIX}/aq-1/telemetry", f"{PREFIX}/aq-1/status")),
    "aq-2": ("smartby", None, (f"{PREFIX}/aq-2/telemetry", f"{PREFIX}/aq-2/status")),
    "plug-1": (
        "tasmota",
        "tasmota_A1B2C3",
        ("tele/tasmota_A1B2C3/SENSOR", "tele/tasmota_A1B2C3/LWT"),
    ),
    "plug-2": (
        "tasmota",
        "tasmota_D4E5F6",
        ("tele/tasmota_D4E5F6/SENSOR", "tele/tasmota_D4E5F6/LWT"),
    ),
    "esp-1": ("esphome", "balcony", ("balcony/sensor/pm_2_5/state", "balcony/status")),
    "esp-2": ("esphome", "kitchen", ("kitchen/sensor/temperature/state", "kitchen/status")),
}
#: a LoRaWAN device: its uplinks come through its network server, never its own login
LORA = ("lora-1", "chirpstack-v4", "70b3d57ed0052f3a")
MQTT_DEVICES = ("aq-1", "plug-1", "esp-1")
#: topics of no device that a device of some profile might try
FOREIGN = (
    "tele/tasmota_A1B2C3/STATE",  # a Tasmota's own tree, beyond SENSOR and LWT
    "cmnd/tasmota_A1B2C3/POWER",
    "balcony/switch/relay/state",  # an ESPHome node's tree, beyond sensors and status
    "balcony/sensor/pm_2_5/command",
    "v3/app@ttn/devices/dev1/up",
    f"application/1/device/{LORA[2]}/event/up",
    "v1.1/Datastreams(1)/Observations",
    f"{PREFIX}/public/warnings/torget",
    "$CONTROL/dynamic-security/v1",
)


@pytest.fixture
def fleet(conn: psycopg.Connection, secure: SecureBroker) -> dict[str, str]:
    """Two devices of each MQTT profile and one LoRaWAN device, registered and pushed
    to the broker with their secrets."""
    secrets = {
        device: register_device(conn, device, profile, key)
        for device, (profile, key, _) in DEVICES.items()
    }
    device, profile, key = LORA
    secrets[device] = register_device(conn, device, profile, key)
    report = secure.push(conn, list(secrets), secrets)
    assert not report.problems(), report.problems()
    return secrets


def device_login(secure: SecureBroker, fleet: dict[str, str], device: str) -> object:
    session = login(secure.port, device, fleet[device], client_id=device)
    assert session.client is not None, (device, session.reason)
    return session.client


@pytest.mark.parametrize("device", MQTT_DEVICES)
def test_a_device_of_each_profile_publishes_only_its_own_topics(
    secure: SecureBroker, fleet: dict[str, str], device: str
) -> None:
    own = DEVICES[device][2]
    others = [t for d, (_, _, topics) in DEVICES.items() if d != device for t in topics]
    session = login(secure.port, device, fleet[device], client_id=device)
    assert session.client is not None, session.reason
    try:
        for topic in own:
            assert publish(session.client, topic, b"1") == NO_MATCHING_SUBSCRIBERS, topic
        for topic in (*others, *FOREIGN):
            assert publish(session.client, topic, b"1") == NOT_AUTHORIZED, topic
    finally:
        close(session.client)


@pytest.mark.parametrize("device", MQTT_DEVICES)
def test_a_device_of_each_profile_subscribes_to_nothing(
    secure: SecureBroker, fleet: dict[str, str], device: str
) -> None:
    """Not another device's topics, not its own, not the profiles' wildcards nor the
    ingest worker's filters."""
    every = [t for _, _, topics in DEVICES.values() for t in topics]
    wildcards = ["#", "tele/#", "+/status", "+/sensor/+/state", "tele/+/SENSOR", "+/#"]
    workers = ingest_filters(PREFIX, "plain") + ingest_filters(PREFIX, "shared")
    session = login(secure.port, device, fleet[device], client_id=device)
    assert session.client is not None, session.reason
    try:
        for topic in (*every, *wildcards, *workers):
            assert subscribe(session.client, topic) == [NOT_AUTHORIZED], topic
    finally:
        close(session.client)


def test_a_lorawan_device_publishes_nothing_on_the_platforms_broker(
    secure: SecureBroker, fleet: dict[str, str]
) -> None:
    """Its network server speaks for it (an ingest source); its own account, should its
    secret be used, may publish not even its own uplink topic."""
    device, _, eui = LORA
    session = login(secure.port, device, fleet[device], client_id=device)
    assert session.client is not None, session.reason
    try:
        for topic in (
            f"application/1/device/{eui}/event/up",
            f"v3/app@ttn/devices/{device}/up",
            f"{PREFIX}/{device}/telemetry",
        ):
            assert publish(session.client, topic, b"{}") == NOT_AUTHORIZED, topic
    finally:
        close(session.client)


def test_a_new_key_moves_the_devices_topics(
    conn: psycopg.Connection, secure: SecureBroker, fleet: dict[str, str]
) -> None:
    """A Tasmota re-flashed with another Topic (a catalogue re-import): once pushed,
    its old topics are refused and the new ones allowed."""
    from core.profiles import check_binding

    site = conn.execute("SELECT site_id FROM devices WHERE id = 'plug-1'").fetchone()
    assert site is not None
    binding = check_binding("tasmota", "tasmota_0F0F0F", None, None, None)
    upsert_device(conn, DeviceRecord("plug-1", site[0], "air_quality", binding=binding))
    secure.push(conn, ["plug-1"])
    session = login(secure.port, "plug-1", fleet["plug-1"], client_id="plug-1")
    assert session.client is not None
    try:
        assert publish(session.client, "tele/tasmota_0F0F0F/SENSOR", b"{}") == (
            NO_MATCHING_SUBSCRIBERS
        )
        assert publish(session.client, "tele/tasmota_A1B2C3/SENSOR", b"{}") == NOT_AUTHORIZED
    finally:
        close(session.client)


@pytest.mark.parametrize("mode", ["plain", "shared"])
def test_the_ingest_account_subscribes_to_exactly_the_profiles_filters(
    conn: psycopg.Connection, secure: SecureBroker, fleet: dict[str, str], mode: str
) -> None:
    secure.sync(conn, mode=mode)  # type: ignore[arg-type]
    try:
        session = login(
            secure.port, "smartby-ingest-1", secure.ingest_password, client_id="smartby-ingest-1"
        )
        assert session.client is not None
        try:
            for topic in ingest_filters(PREFIX, mode):  # type: ignore[arg-type]
                assert subscribe(session.client, topic) == [GRANTED_QOS_1], topic
            other = "plain" if mode == "shared" else "shared"
            for topic in (
                *ingest_filters(PREFIX, other),  # type: ignore[arg-type]
                "#",
                "tele/#",
                "+/#",
                "+/+/+",
                "tele/tasmota_A1B2C3/STATE",
                "$share/x/tele/+/SENSOR",
            ):
                assert subscribe(session.client, topic) == [NOT_AUTHORIZED], topic
            for topic in ("tele/tasmota_A1B2C3/SENSOR", "balcony/status"):
                assert publish(session.client, topic, b"1") == NOT_AUTHORIZED, topic
        finally:
            close(session.client)
    finally:
        secure.sync(conn, mode="plain")


def test_a_worker_on_the_secure_broker_hears_every_mqtt_profile(
    conn: psycopg.Connection,
    secure: SecureBroker,
    fleet: dict[str, str],
    services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's subscriptions are all granted (none named refused) and a Tasmota,
    an ESPHome and a smartby device, each logged in as itself, are stored."""
    caplog.set_level(logging.WARNING, logger="ingest")
    settings = secure.worker_settings(services)
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 30))
    sent = {
        "plug-1": ("tele/tasmota_A1B2C3/SENSOR", f'{{"Time":"{stamp}Z","SDS0X1":{{"PM2.5":5.1}}}}'),
        "esp-1": ("balcony/sensor/pm_2_5/state", "7.5"),
        "aq-1": (f"{PREFIX}/aq-1/telemetry", f'{{"time": {now - 30}, "pm25": 3.5}}'),
    }
    with running_worker(settings, LOCAL_INGEST_CLIENT_ID) as worker:
        for device, (topic, payload) in sent.items():
            session = login(secure.port, device, fleet[device], client_id=device)
            assert session.client is not None, session.reason
            try:
                assert publish(session.client, topic, payload.encode()) == 0, topic
            finally:
                close(session.client)
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 3, what="3 readings")
        assert worker.metrics.registry.get_sample_value("smartby_ingest_broker_connected") == 1
    assert not [r for r in caplog.records if "refused" in r.getMessage()]
    assert readings(conn, "plug-1")["pm25"][0][1] == 5.1
    assert readings(conn, "esp-1")["pm25"][0][1] == 7.5
    assert readings(conn, "aq-1")["pm25"][0][1] == 3.5
    # none of these devices' messages (the shared broker may still hold retained
    # statuses of other tests' devices, which this registry does not know)
    assert count(conn, "SELECT count(*) FROM quarantine WHERE device_id = ANY(%s)", list(sent)) == 0


def test_a_network_server_source_works_beside_the_secure_broker(
    conn: psycopg.Connection,
    secure: SecureBroker,
    fleet: dict[str, str],
    services: Services,
    network_server: NetworkServer,
) -> None:
    """`smartby ingest` with a ChirpStack source: the platform's worker logs in to the
    dynamic-security broker as its ingest account, the source's worker to the network
    server with the source's credentials; the uplink is stored."""
    device, _, eui = LORA
    cs = source(network_server, "chirpstack", "chirpstack-v4", mqtt_version="5", qos=1)
    settings = secure.worker_settings(services, ingest_sources=(cs,))
    t0 = time.time() - 60
    with running_service(settings, LOCAL_INGEST_CLIENT_ID):
        publish_as_network_server(
            network_server,
            [
                (
                    f"application/1/device/{eui}/event/up",
                    chirpstack(CHIRPSTACK_UPLINK, t0, eui, object=CHIRPSTACK_OBJECT),
                )
            ],
        )
        wait_for(
            lambda: count(conn, f"SELECT count(*) FROM readings r JOIN series s ON s.id ="
                          f" r.series_id WHERE s.device_id = '{device}'") > 0,
            what="the uplink's readings",
        )  # fmt: skip
    assert count(conn, "SELECT count(*) FROM quarantine WHERE topic LIKE 'application/%%'") == 0
