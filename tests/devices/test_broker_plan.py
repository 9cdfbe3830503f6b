"""The broker plan (who may do what) and the plugin's file written from it: built
without a broker; then one broker started from a file the registry wrote lets every
device in with its secret, with nothing sent over $CONTROL."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import psycopg
import pytest

from core.broker import LOCAL_INGEST_CLIENT_ID, STA_PUBLISHER_USER
from db.registry import BrokerDevice, hash_secret
from devices.broker_plan import (
    DEFAULT_ACL_ACCESS,
    INGEST_ROLE,
    MANAGED,
    NO_PASSWORD,
    Acl,
    PlatformAccounts,
    device_role,
    dynsec_document,
    ingest_client_ids,
    ingest_role,
    password_fields,
    write_dynsec_file,
)
from devices.registry import DeviceRecord, SiteRecord, add_device, disable_device, upsert_site
from stack.mosquitto import DynamicSecurity, MosquittoBroker, find_dynsec_plugin, find_mosquitto
from stack.ports import free_port
from tests.fixtures.secure import close, login, publish, subscribe
from tests.fixtures.services import Services


def test_a_mosquitto_hash_splits_into_the_plugins_fields() -> None:
    salt = bytes(range(12))
    hashed = hash_secret("s3cret", salt=salt)
    fields = password_fields(hashed)
    assert fields["iterations"] == 101
    assert base64.b64decode(fields["salt"]) == salt
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 101, 64)
    assert base64.b64decode(fields["password"]) == expected


@pytest.mark.parametrize(
    ("hashed", "why"),
    [
        (hash_secret("x", salt=bytes(16)), "salt of 16 bytes"),  # the plugin drops these
        ("$6$abc$def", "not a Mosquitto"),
        ("$6$101$AAAAAAAAAAAAAAAA$AAAA", "only PBKDF2-SHA512"),
        ("plain-text", "not a Mosquitto"),
        ("$7$101$not base64!$xx", "not a Mosquitto"),
    ],
)
def test_hashes_the_plugin_would_drop_are_refused(hashed: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        password_fields(hashed)


def test_roles_grant_exactly_the_topics() -> None:
    assert device_role("aq-1", ["smartby/aq-1/telemetry", "smartby/aq-1/status"]).acls == (
        Acl("publishClientSend", "smartby/aq-1/telemetry"),
        Acl("publishClientSend", "smartby/aq-1/status"),
    )
    # a profile's list (Tasmota: tele/<topic>/SENSOR, tele/<topic>/LWT) works the same
    tasmota = device_role("tas-1", ["tele/tas-1/SENSOR", "tele/tas-1/LWT"])
    assert {a.topic for a in tasmota.acls} == {"tele/tas-1/SENSOR", "tele/tas-1/LWT"}
    plain = ingest_role("city", "plain", ("smartby",))
    assert plain.name == INGEST_ROLE
    assert {(a.acltype, a.topic) for a in plain.acls} == {
        ("subscribeLiteral", "city/+/telemetry"),
        ("subscribeLiteral", "city/+/status"),
        ("publishClientReceive", "city/+/telemetry"),
        ("publishClientReceive", "city/+/status"),
        ("publishClientSend", "city/public/warnings/#"),  # the stations' warnings
    }
    # every enabled profile's filters, subscribed and received, nothing more
    profiles = {(a.acltype, a.topic) for a in ingest_role("city", "plain", ("tasmota",)).acls}
    assert profiles == {
        ("subscribeLiteral", "tele/+/SENSOR"),
        ("subscribeLiteral", "tele/+/LWT"),
        ("publishClientReceive", "tele/+/SENSOR"),
        ("publishClientReceive", "tele/+/LWT"),
        ("publishClientSend", "city/public/warnings/#"),
    }
    shared = {(a.acltype, a.topic) for a in ingest_role("city", "shared").acls}
    assert ("subscribeLiteral", "$share/smartby-ingest/+/sensor/+/state") in shared
    assert ("subscribeLiteral", "+/sensor/+/state") not in shared
    # the plugin checks the whole shared filter: the group's literal filters, no other
    assert ("subscribeLiteral", "$share/smartby-ingest/city/+/telemetry") in shared
    assert ("subscribeLiteral", "city/+/telemetry") not in shared
    assert all(a.allow for a in plain.acls)
    assert ingest_client_ids(None, 3) == [
        "smartby-ingest-1",
        "smartby-ingest-2",
        "smartby-ingest-3",
    ]
    assert ingest_client_ids(LOCAL_INGEST_CLIENT_ID, 3) == [LOCAL_INGEST_CLIENT_ID]


def test_the_document_holds_every_account_bound_and_hashed() -> None:
    plaintexts = ("pw-device-0", "pw-ingest-0", "pw-admin-0", "pw-publisher-0")
    secret_hash = hash_secret(plaintexts[0])
    accounts = PlatformAccounts(
        prefix="smartby",
        mode="plain",
        ingest_ids=(LOCAL_INGEST_CLIENT_ID,),
        ingest_password=plaintexts[1],
        admin_password=plaintexts[2],
        sta_publisher_password=plaintexts[3],
    )
    devices = [
        BrokerDevice("aq-1", "DVES_1", True, secret_hash),
        BrokerDevice("aq-2", "aq-2", False, secret_hash),
        BrokerDevice("aq-3", "aq-3", True, None),
    ]
    document, without = dynsec_document(accounts.plan(devices, hashed=True))
    assert document["defaultACLAccess"] == DEFAULT_ACL_ACCESS
    assert document["groups"] == []
    clients = {c["username"]: c for c in document["clients"]}
    assert set(clients) == {
        "smartby-admin",
        LOCAL_INGEST_CLIENT_ID,
        STA_PUBLISHER_USER,
        "aq-1",
        "aq-2",
        "aq-3",
    }
    assert clients["aq-1"]["clientid"] == "DVES_1"
    assert clients["aq-1"]["roles"] == [{"rolename": "smartby-device-aq-1"}]
    assert clients["aq-1"]["textdescription"] == MANAGED
    assert clients["aq-2"]["disabled"] is True
    assert "disabled" not in clients["aq-1"]
    assert "password" not in clients["aq-3"]
    assert clients["aq-3"]["textdescription"] == NO_PASSWORD
    assert without == ["aq-3"]
    assert clients[LOCAL_INGEST_CLIENT_ID]["clientid"] == LOCAL_INGEST_CLIENT_ID
    assert "clientid" not in clients["smartby-admin"]  # several admins work at once
    roles = {r["rolename"]: r for r in document["roles"]}
    assert roles["smartby-sta-publisher"]["acls"] == [
        {"acltype": "publishClientSend", "topic": "v1.1/#", "allow": True, "priority": 0}
    ]
    text = json.dumps(document)
    assert not [plaintext for plaintext in plaintexts if plaintext in text]


def test_the_file_is_private_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "dynsec" / "dynamic-security.json"
    accounts = PlatformAccounts("smartby", "plain", ("w",), "i", admin_password="a")
    write_dynsec_file(path, accounts.plan([], hashed=True))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    write_dynsec_file(path, accounts.plan([], hashed=True))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["dynamic-security.json"]


def test_a_broker_started_from_the_registrys_file_lets_devices_in_at_once(
    services: Services, conn: psycopg.Connection
) -> None:
    """Devices registered while the broker is stopped; the file from the registry's
    hashes; the broker started: their secrets work, their rights are in place, the
    disabled one is refused, and no command was sent over $CONTROL."""
    upsert_site(conn, SiteRecord("torget", "Torget", "roadside", "Narvik", 17.4, 68.4, {}))
    secrets = {d: add_device(conn, DeviceRecord(d, "torget", "air_quality")) for d in ("a", "b")}
    disable_device(conn, "b")
    root = services.root / f"bootstrap-{free_port()}"
    accounts = PlatformAccounts(
        "smartby", "plain", (LOCAL_INGEST_CLIENT_ID,), "i", admin_password="a"
    )
    from db.registry import broker_devices

    config = root / "dynamic-security.json"
    write_dynsec_file(config, accounts.plan(broker_devices(conn), hashed=True))
    binary = find_mosquitto()
    broker = MosquittoBroker(
        root,
        port=free_port(),
        binary=binary,
        dynsec=DynamicSecurity(find_dynsec_plugin(binary), config),
    )
    broker.start()
    try:
        session = login(broker.port, "a", secrets["a"], client_id="a")
        assert session.client is not None
        try:
            assert publish(session.client, "smartby/a/telemetry", b"{}") == 0x10
            assert publish(session.client, "smartby/b/telemetry", b"{}") == 0x87
            assert subscribe(session.client, "#") == [0x87]
        finally:
            close(session.client)
        assert login(broker.port, "b", secrets["b"], client_id="b").client is None
        worker = login(broker.port, LOCAL_INGEST_CLIENT_ID, "i", client_id=LOCAL_INGEST_CLIENT_ID)
        assert worker.client is not None
        close(worker.client)
    finally:
        broker.stop()
