"""A broker run on the registry's password file and ACL lets each device publish only
as itself, keeps out wrong, disabled and rotated secrets, and lets ingest only read."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from core.settings import Settings
from devices.registry import (
    INGEST_USER,
    DeviceRecord,
    RegistryError,
    SiteRecord,
    add_device,
    disable_device,
    hash_secret,
    list_devices,
    new_secret,
    rotate_secret,
    upsert_site,
    verify_secret,
    write_broker_files,
)
from stack.mosquitto import MosquittoBroker
from stack.ports import free_port
from tests.fixtures.ingest import count, running_worker, wait_for
from tests.fixtures.services import Services, make_service_root

PREFIX = "smartby"


@dataclass
class SecureBroker:
    broker: MosquittoBroker
    root: Path
    ingest_password: str
    secrets: dict[str, str]

    @property
    def port(self) -> int:
        return self.broker.port

    def refresh(self, conn: psycopg.Connection) -> None:
        """Rewrite the files from the registry and SIGHUP the broker, as `up` does."""
        write_broker_files(conn, self.root, PREFIX, hash_secret(self.ingest_password))
        self.broker.reload()


@pytest.fixture
def secure(conn: psycopg.Connection) -> Iterator[SecureBroker]:
    upsert_site(
        conn, SiteRecord("torget", "Torget", "urban_background", "Narvik", 17.43, 68.44, {})
    )
    secrets = {
        device: add_device(conn, DeviceRecord(device, "torget", "air_quality"))
        for device in ("aq-1", "aq-2")
    }
    root = make_service_root("smartby-secure-")
    ingest_password = new_secret()
    passwd, acl = write_broker_files(conn, root, PREFIX, hash_secret(ingest_password))
    broker = MosquittoBroker(root / "broker", port=free_port(), password_file=passwd, acl_file=acl)
    broker.start()
    try:
        yield SecureBroker(broker, root, ingest_password, secrets)
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


def connect(port: int, user: str, password: str) -> tuple[mqtt.Client | None, ReasonCode]:
    """CONNECT as user; the connected client, or None and the broker's refusal."""
    done = threading.Event()
    result: list[ReasonCode] = []
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{user}-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(user, password)

    def on_connect(_c: object, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        result.append(reason)
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert done.wait(10), "no CONNACK"
    if result[0].is_failure:
        client.loop_stop()
        return None, result[0]
    return client, result[0]


def publish(client: mqtt.Client, topic: str, payload: bytes) -> None:
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(10)


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def worker_settings(services: Services, secure: SecureBroker) -> Settings:
    return services.settings(
        mqtt_port=secure.port,
        mqtt_username=INGEST_USER,
        mqtt_password=secure.ingest_password,
        ingest_metrics_port=0,
        ingest_batch_ms=20,
    )


def test_a_device_publishes_as_itself_and_never_as_another(
    conn: psycopg.Connection, secure: SecureBroker, worker_settings: Settings
) -> None:
    """aq-1 publishes under aq-2's id (refused), then under its own (stored)."""
    with running_worker(worker_settings):
        client, _ = connect(secure.port, "aq-1", secure.secrets["aq-1"])
        assert client is not None
        try:
            publish(client, f"{PREFIX}/aq-2/telemetry", b'{"pm25": 666}')
            publish(client, f"{PREFIX}/aq-1/telemetry", b'{"pm25": 5}')
        finally:
            close(client)
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") >= 1, what="own reading")
    rows = conn.execute(
        "SELECT s.device_id, r.value FROM readings r JOIN series s ON s.id = r.series_id"
    ).fetchall()
    assert rows == [("aq-1", 5.0)]
    assert count(conn, "SELECT count(*) FROM quarantine") == 0


def test_wrong_secret_and_anonymous_clients_cannot_connect(secure: SecureBroker) -> None:
    """CONNECT with a wrong password, an unknown user and no user at all: all refused."""
    for user, password in (("aq-1", "wrong"), ("nobody", secure.secrets["aq-1"])):
        client, reason = connect(secure.port, user, password)
        assert client is None, f"{user} got in"
        assert reason.is_failure
    anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anon", protocol=mqtt.MQTTv5)
    refused = threading.Event()
    anonymous.on_connect = lambda _c, _u, _f, reason, _p: reason.is_failure and refused.set()
    anonymous.connect("127.0.0.1", secure.port)
    anonymous.loop_start()
    try:
        assert refused.wait(10)
    finally:
        anonymous.loop_stop()


def test_a_disabled_device_cannot_connect(conn: psycopg.Connection, secure: SecureBroker) -> None:
    """Disable aq-2, reload the broker: its secret no longer opens a connection."""
    client, _ = connect(secure.port, "aq-2", secure.secrets["aq-2"])
    assert client is not None
    close(client)
    disable_device(conn, "aq-2")
    secure.refresh(conn)
    wait_for(
        lambda: connect(secure.port, "aq-2", secure.secrets["aq-2"])[0] is None,
        timeout=10,
        what="the broker to reload",
    )
    still, _ = connect(secure.port, "aq-1", secure.secrets["aq-1"])
    assert still is not None, "disabling one device locked out another"
    close(still)


def test_rotating_a_secret_locks_out_the_old_one(
    conn: psycopg.Connection, secure: SecureBroker
) -> None:
    old = secure.secrets["aq-1"]
    new = rotate_secret(conn, "aq-1")
    assert new != old
    secure.refresh(conn)
    wait_for(
        lambda: connect(secure.port, "aq-1", old)[0] is None,
        timeout=10,
        what="the old secret to stop working",
    )
    client, _ = connect(secure.port, "aq-1", new)
    assert client is not None
    close(client)


def test_a_reload_does_not_drop_connected_clients(
    conn: psycopg.Connection, secure: SecureBroker
) -> None:
    """SIGHUP after a registry change: a device already connected stays connected."""
    client, _ = connect(secure.port, "aq-1", secure.secrets["aq-1"])
    assert client is not None
    dropped = threading.Event()
    client.on_disconnect = lambda *_args: dropped.set()
    try:
        upsert_site(conn, SiteRecord("havn", "Havna", "roadside", "Narvik", 17.41, 68.43, {}))
        add_device(conn, DeviceRecord("aq-3", "havn", "air_quality"))
        secure.refresh(conn)
        wait_for(lambda: connect(secure.port, "aq-3", "x")[1].is_failure, what="reload")
        publish(client, f"{PREFIX}/aq-1/telemetry", b'{"pm25": 1}')
        assert not dropped.is_set()
    finally:
        close(client)


def test_the_ingest_account_cannot_publish_telemetry(
    conn: psycopg.Connection, secure: SecureBroker, worker_settings: Settings
) -> None:
    """The ingest account publishes as a device (dropped); the device's own message lands."""
    with running_worker(worker_settings):
        ingest, _ = connect(secure.port, INGEST_USER, secure.ingest_password)
        assert ingest is not None
        try:
            publish(ingest, f"{PREFIX}/aq-1/telemetry", b'{"pm25": 999}')
        finally:
            close(ingest)
        device, _ = connect(secure.port, "aq-1", secure.secrets["aq-1"])
        assert device is not None
        try:
            publish(device, f"{PREFIX}/aq-1/telemetry", b'{"pm25": 4}')
        finally:
            close(device)
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") >= 1, what="device reading")
    assert conn.execute("SELECT value FROM readings").fetchall() == [(4.0,)]


def test_secrets_are_stored_only_as_mosquitto_hashes_and_never_listed(
    conn: psycopg.Connection, secure: SecureBroker
) -> None:
    stored = dict(conn.execute("SELECT id, secret_hash FROM devices").fetchall())
    for device, secret in secure.secrets.items():
        assert secret not in stored[device]
        assert stored[device].startswith("$7$101$")
        assert verify_secret(secret, stored[device])
    listing = repr(list_devices(conn))
    assert "secret" not in listing
    assert "$7$" not in listing
    passwd = (secure.root / "passwd").read_text()
    assert all(secret not in passwd for secret in secure.secrets.values())


def test_the_ingest_user_name_is_reserved(conn: psycopg.Connection, secure: SecureBroker) -> None:
    with pytest.raises(RegistryError, match="reserved"):
        add_device(conn, DeviceRecord(INGEST_USER, "torget", "air_quality"))
