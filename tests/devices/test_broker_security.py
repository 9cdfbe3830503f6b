"""The broker, run on Mosquitto's dynamic security plugin as the platform runs it, lets
each device publish only its own topics and subscribe to nothing, binds every account
to its client id, lets the ingest accounts only subscribe, and follows the registry:
a device added, disabled, re-keyed, rebound or deleted is so at the broker at once."""

from __future__ import annotations

import json
import os
import stat
import time

import psycopg
import pytest

from core.broker import LOCAL_INGEST_CLIENT_ID
from devices.broker_plan import MANAGED, NO_PASSWORD, device_role_name
from devices.broker_sync import read_state
from devices.registry import (
    DeviceRecord,
    RegistryError,
    SiteRecord,
    add_device,
    delete_device,
    disable_device,
    enable_device,
    list_devices,
    rotate_secret,
    set_client_id,
    upsert_site,
    verify_secret,
)
from tests.fixtures.ingest import count, running_worker, wait_for
from tests.fixtures.secure import PREFIX, SecureBroker, close, login, publish, subscribe
from tests.fixtures.services import Services

NOT_AUTHORIZED = 0x87
NO_MATCHING_SUBSCRIBERS = 0x10
GRANTED_QOS_1 = 1


@pytest.fixture
def devices(conn: psycopg.Connection, secure: SecureBroker) -> dict[str, str]:
    """aq-1 and aq-2, registered and pushed to the broker with their secrets."""
    upsert_site(
        conn, SiteRecord("torget", "Torget", "urban_background", "Narvik", 17.43, 68.44, {})
    )
    secrets = {
        device: add_device(conn, DeviceRecord(device, "torget", "air_quality"))
        for device in ("aq-1", "aq-2")
    }
    secure.push(conn, list(secrets), secrets)
    return secrets


def test_a_device_publishes_only_its_own_topics(
    secure: SecureBroker, devices: dict[str, str]
) -> None:
    """aq-1 publishes QoS 1 to its telemetry and status (accepted; nobody subscribes),
    then to aq-2's topics, another topic of its own, $CONTROL and $SYS (all refused)."""
    session = login(secure.port, "aq-1", devices["aq-1"], client_id="aq-1")
    assert session.client is not None, session.reason
    try:
        for topic in (f"{PREFIX}/aq-1/telemetry", f"{PREFIX}/aq-1/status"):
            assert publish(session.client, topic, b'{"pm25": 1}') == NO_MATCHING_SUBSCRIBERS
        for topic in (
            f"{PREFIX}/aq-2/telemetry",
            f"{PREFIX}/aq-2/status",
            f"{PREFIX}/aq-1/other",
            "$CONTROL/dynamic-security/v1",
            "$SYS/broker/x",
            "v1.1/Datastreams(1)/Observations",
        ):
            assert publish(session.client, topic, b"{}") == NOT_AUTHORIZED, topic
    finally:
        close(session.client)


#: what a hostile device might subscribe to: everything, everyone's telemetry, the
#: broker's internals, the plugin's answers, the worker's share group and another
DEVICE_SUBSCRIPTIONS = (
    "#",
    f"{PREFIX}/#",
    f"{PREFIX}/+/telemetry",
    f"{PREFIX}/aq-2/telemetry",
    f"{PREFIX}/aq-1/telemetry",
    "+/+/+",
    "$SYS/#",
    "$CONTROL/#",
    "$CONTROL/dynamic-security/v1/response",
    f"$share/smartby-ingest/{PREFIX}/+/telemetry",
    f"$share/other/{PREFIX}/+/telemetry",
)


def test_a_device_may_subscribe_to_nothing(secure: SecureBroker, devices: dict[str, str]) -> None:
    """Each SUBSCRIBE of `DEVICE_SUBSCRIPTIONS` gets SUBACK 0x87, its own topics too."""
    session = login(secure.port, "aq-1", devices["aq-1"], client_id="aq-1")
    assert session.client is not None
    try:
        for topic in DEVICE_SUBSCRIPTIONS:
            assert subscribe(session.client, topic) == [NOT_AUTHORIZED], topic
    finally:
        close(session.client)


def test_accounts_are_bound_to_their_client_ids(
    secure: SecureBroker, devices: dict[str, str]
) -> None:
    """A device's credentials work under its own client id only: not under the worker's,
    another device's, a random one, or one the broker assigns (empty)."""
    for client_id in (LOCAL_INGEST_CLIENT_ID, "smartby-ingest-1", "aq-2", "aq-1-other"):
        refused = login(secure.port, "aq-1", devices["aq-1"], client_id=client_id)
        assert refused.client is None, client_id
        assert refused.reason.value == NOT_AUTHORIZED
    worker = login(secure.port, "smartby-ingest-1", secure.ingest_password, client_id="aq-1")
    assert worker.client is None, "the ingest account logged in under a device's id"
    own = login(secure.port, "aq-1", devices["aq-1"], client_id="aq-1")
    assert own.client is not None
    close(own.client)


def test_wrong_secrets_unknown_users_and_anonymous_clients_are_refused(
    secure: SecureBroker, devices: dict[str, str]
) -> None:
    for username, password, client_id in (
        ("aq-1", "wrong", "aq-1"),
        ("nobody", devices["aq-1"], "nobody"),
        ("aq-1", devices["aq-2"], "aq-1"),
        (None, None, LOCAL_INGEST_CLIENT_ID),
        (None, None, "aq-1"),
    ):
        refused = login(secure.port, username, password, client_id=client_id)
        assert refused.client is None, (username, client_id)
        assert refused.reason.is_failure


def test_the_ingest_account_subscribes_to_its_filters_only_and_publishes_nothing(
    secure: SecureBroker, devices: dict[str, str]
) -> None:
    session = login(
        secure.port,
        LOCAL_INGEST_CLIENT_ID,
        secure.ingest_password,
        client_id=LOCAL_INGEST_CLIENT_ID,
    )
    assert session.client is not None
    try:
        assert subscribe(session.client, f"{PREFIX}/+/telemetry") == [GRANTED_QOS_1]
        assert subscribe(session.client, f"{PREFIX}/+/status") == [GRANTED_QOS_1]
        for topic in ("#", f"{PREFIX}/#", "$SYS/#", "$CONTROL/#", f"$share/x/{PREFIX}/+/telemetry"):
            assert subscribe(session.client, topic) == [NOT_AUTHORIZED], topic
        for topic in (f"{PREFIX}/aq-1/telemetry", "$CONTROL/dynamic-security/v1"):
            assert publish(session.client, topic, b'{"pm25": 999}') == NOT_AUTHORIZED
    finally:
        close(session.client)


def test_a_device_cannot_drive_the_plugin(secure: SecureBroker, devices: dict[str, str]) -> None:
    """aq-1 asks $CONTROL to make it an admin: refused, and nothing changed."""
    before = read_state_of(secure)
    session = login(secure.port, "aq-1", devices["aq-1"], client_id="aq-1")
    assert session.client is not None
    try:
        command = {
            "commands": [
                {"command": "createClient", "username": "evil", "password": "evil"},
                {"command": "addClientRole", "username": "aq-1", "rolename": "smartby-admin"},
                {
                    "command": "setDefaultACLAccess",
                    "acls": [{"acltype": "subscribe", "allow": True}],
                },
            ]
        }
        payload = json.dumps(command).encode()
        assert publish(session.client, "$CONTROL/dynamic-security/v1", payload) == NOT_AUTHORIZED
    finally:
        close(session.client)
    assert read_state_of(secure) == before
    assert login(secure.port, "evil", "evil", client_id="evil").client is None


def read_state_of(secure: SecureBroker) -> tuple[object, ...]:
    with secure.control() as control:
        state = read_state(control)
    return (state.clients, state.roles, state.default_acl)


# ------------------------------------------------------------ the registry drives it


def test_a_device_added_can_publish_within_a_second(
    conn: psycopg.Connection, secure: SecureBroker, devices: dict[str, str], services: Services
) -> None:
    """add_device commits, the push gives the broker the account and the secret; the
    device's first message is stored by the running worker."""
    settings = secure.worker_settings(services)
    with running_worker(settings, LOCAL_INGEST_CLIENT_ID):
        secret = add_device(conn, DeviceRecord("aq-new", "torget", "air_quality"))
        started = time.monotonic()
        secure.push(conn, ["aq-new"], {"aq-new": secret})
        session = login(secure.port, "aq-new", secret, client_id="aq-new")
        took = time.monotonic() - started
        assert session.client is not None, session.reason
        try:
            assert publish(session.client, f"{PREFIX}/aq-new/telemetry", b'{"pm25": 3}') == 0
        finally:
            close(session.client)
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 1, what="its reading")
    assert took < 1.0, f"the new device waited {took:.2f} s"


def test_disable_enable_rotate_and_delete_reach_the_broker(
    conn: psycopg.Connection, secure: SecureBroker, devices: dict[str, str]
) -> None:
    old = devices["aq-1"]
    online = login(secure.port, "aq-1", old, client_id="aq-1")
    assert online.client is not None

    disable_device(conn, "aq-1")
    secure.push(conn, ["aq-1"])
    wait_for(lambda: not online.client.is_connected(), what="the disabled device kicked")
    close(online.client)
    assert login(secure.port, "aq-1", old, client_id="aq-1").client is None
    still = login(secure.port, "aq-2", devices["aq-2"], client_id="aq-2")
    assert still.client is not None, "disabling aq-1 locked out aq-2"
    close(still.client)

    enable_device(conn, "aq-1")
    secure.push(conn, ["aq-1"])
    back = login(secure.port, "aq-1", old, client_id="aq-1")
    assert back.client is not None
    close(back.client)

    new = rotate_secret(conn, "aq-1")
    secure.push(conn, ["aq-1"], {"aq-1": new})
    assert login(secure.port, "aq-1", old, client_id="aq-1").client is None
    rotated = login(secure.port, "aq-1", new, client_id="aq-1")
    assert rotated.client is not None
    close(rotated.client)

    # a persistent session of aq-2, then aq-2 deleted: refused, and the session gone
    kept = login(
        secure.port,
        "aq-2",
        devices["aq-2"],
        client_id="aq-2",
        clean_start=False,
        session_expiry=3600,
    )
    assert kept.client is not None
    close(kept.client)
    delete_device(conn, "aq-2")
    report = secure.push(conn, ["aq-2"])
    assert "aq-2" in report.purged
    assert login(secure.port, "aq-2", devices["aq-2"], client_id="aq-2").client is None
    with secure.control() as control:
        state = read_state(control)
    assert "aq-2" not in state.clients
    assert device_role_name("aq-2") not in state.roles
    assert {"aq-1", LOCAL_INGEST_CLIENT_ID} <= set(state.clients)


def test_a_new_client_id_ends_the_session_under_the_old_one(
    conn: psycopg.Connection, secure: SecureBroker, devices: dict[str, str]
) -> None:
    """Real firmware picks its own client id (Tasmota DVES_XXXXXX): rebind aq-1 to it;
    the old id is refused and its persistent session ended."""
    kept = login(
        secure.port,
        "aq-1",
        devices["aq-1"],
        client_id="aq-1",
        clean_start=False,
        session_expiry=3600,
    )
    assert kept.client is not None
    close(kept.client)
    set_client_id(conn, "aq-1", "DVES_4F2A1C")
    report = secure.push(conn, ["aq-1"])
    assert "aq-1" in report.purged
    assert login(secure.port, "aq-1", devices["aq-1"], client_id="aq-1").client is None
    moved = login(secure.port, "aq-1", devices["aq-1"], client_id="DVES_4F2A1C")
    assert moved.client is not None
    close(moved.client)
    resumed = login(
        secure.port,
        "aq-1",
        devices["aq-1"],
        client_id="DVES_4F2A1C",
        clean_start=False,
        session_expiry=60,
    )
    assert resumed.client is not None
    close(resumed.client)


def test_client_ids_are_unique_and_never_a_platform_accounts(
    conn: psycopg.Connection, devices: dict[str, str]
) -> None:
    for client_id in (LOCAL_INGEST_CLIENT_ID, "smartby-ingest-1", "smartby-admin"):
        with pytest.raises(RegistryError, match="reserved"):
            add_device(conn, DeviceRecord("aq-x", "torget", "air_quality", client_id=client_id))
        with pytest.raises(RegistryError, match="reserved"):
            set_client_id(conn, "aq-1", client_id)
    with pytest.raises(RegistryError, match="already used"):
        add_device(conn, DeviceRecord("aq-x", "torget", "air_quality", client_id="aq-2"))
    with pytest.raises(RegistryError, match="already used by device 'aq-2'"):
        set_client_id(conn, "aq-1", "aq-2")
    with pytest.raises(RegistryError, match="reserved"):
        add_device(conn, DeviceRecord("smartby-ingest-9", "torget", "air_quality"))
    with pytest.raises(RegistryError, match="not valid"):
        set_client_id(conn, "aq-1", "has space")


# ------------------------------------------------------------------ reconciliation


def test_reconciliation_removes_stale_accounts_and_creates_missing_ones(
    conn: psycopg.Connection, secure: SecureBroker, devices: dict[str, str]
) -> None:
    """Broker and registry disagree: a managed account the registry no longer has
    (deleted behind the broker's back), one the broker lacks, a role with an extra
    ACL and an account with an extra role.  One sync fixes all; the account whose
    secret the broker never got is reported with its fix; a city's own account (not
    managed by smartby) is left alone."""
    with secure.control() as control:
        control.call("createClient", username="city-app", password="x", clientid="city-app")
        control.call(
            "addRoleACL",
            rolename=device_role_name("aq-1"),
            acltype="subscribePattern",
            topic="#",
            allow=True,
        )
        control.call("addClientRole", username="aq-1", rolename="smartby-ingest")
    conn.execute("DELETE FROM devices WHERE id = 'aq-2'")
    add_device(conn, DeviceRecord("aq-3", "torget", "air_quality"))  # never pushed

    report = secure.sync(conn)

    with secure.control() as control:
        state = read_state(control)
    assert "aq-2" not in state.clients
    assert "aq-3" in state.clients
    assert "city-app" in state.clients, "an account smartby does not manage was touched"
    assert {r["rolename"] for r in state.clients["aq-1"]["roles"]} == {device_role_name("aq-1")}
    assert all(acl.acltype == "publishClientSend" for acl in state.roles[device_role_name("aq-1")])
    assert state.clients["aq-3"]["textdescription"] == NO_PASSWORD
    assert state.clients["aq-1"]["textdescription"] == MANAGED
    assert report.problems() == [
        "device 'aq-3' has no password at the broker (its secret was never sent there):"
        " run `smartby devices rotate-secret aq-3`"
    ]
    assert "aq-2" in report.purged
    assert "aq-1" in report.purged  # it lost rights
    # the fix the report names: rotate, push
    secret = rotate_secret(conn, "aq-3")
    assert not secure.push(conn, ["aq-3"], {"aq-3": secret}).problems()
    session = login(secure.port, "aq-3", secret, client_id="aq-3")
    assert session.client is not None
    close(session.client)
    assert not secure.sync(conn).changes, "a second sync found more to change"
    with secure.control() as control:
        control.call("deleteClient", username="city-app")


def test_secrets_are_stored_only_as_mosquitto_hashes_and_never_listed(
    conn: psycopg.Connection, devices: dict[str, str]
) -> None:
    stored = dict(conn.execute("SELECT id, secret_hash FROM devices").fetchall())
    for device, secret in devices.items():
        assert secret not in stored[device]
        assert stored[device].startswith("$7$101$")
        assert verify_secret(secret, stored[device])
    listing = repr(list_devices(conn))
    assert "secret" not in listing
    assert "$7$" not in listing


def test_the_brokers_account_file_stays_private(
    secure: SecureBroker, devices: dict[str, str]
) -> None:
    """Mosquitto 2.0.11 writes the plugin's file world-readable on its own; started
    with umask 077 it stays 0600 across the rewrites every change makes."""
    assert secure.broker.dynsec is not None
    path = secure.broker.dynsec.config_file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert all(secret not in text for secret in devices.values())
