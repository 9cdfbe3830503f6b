"""Every attack a device's own valid credentials allow loses 0 messages.

Each test runs the numbered QoS 1 stream (`tests.fixtures.faults`: 2 victim devices,
persistent sessions) through the broker with dynamic security into a real ingest
worker, while a third device, aq-evil, with its valid secret, attacks: it tries to
join the worker's share group (online, and through an offline persistent session,
also one that joined while its rights were wider), to take over the worker's client
id (with Clean Start 1 and 0), to subscribe to wildcards, ``$SYS`` and ``$CONTROL``,
to publish as another device, and to drive the plugin.  Then it counts what the
broker acknowledged against what the database holds: 0 lost, 0 duplicates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import psycopg
import pytest

from core.broker import LOCAL_INGEST_CLIENT_ID, SubscriptionMode
from devices.broker_plan import device_role_name
from devices.broker_sync import read_state
from devices.registry import DeviceRecord, SiteRecord, add_device, upsert_site
from ingest.worker import IngestWorker
from tests.devices.conftest import ATTACKS
from tests.fixtures.faults import (
    Mix,
    NumberedStream,
    StreamCount,
    assert_nothing_lost_nor_doubled,
    register_devices,
    verify,
)
from tests.fixtures.ingest import running_worker, wait_for
from tests.fixtures.secure import PREFIX, SecureBroker, close, login, publish, subscribe
from tests.fixtures.services import Services

pytestmark = pytest.mark.slow

RATE = 200.0  # messages/s per victim device
NOT_AUTHORIZED = 0x87
WORKER_IDS: dict[SubscriptionMode, str] = {
    "plain": LOCAL_INGEST_CLIENT_ID,
    "shared": "smartby-ingest-1",
}
FORGED = -1.0


@pytest.fixture
def attacker(conn: psycopg.Connection, secure: SecureBroker) -> str:
    """aq-evil: a device like any other, its secret in the attacker's hands."""
    upsert_site(conn, SiteRecord("evil", "Evil", "roadside", "Narvik", 17.4, 68.4, {}))
    secret = add_device(conn, DeviceRecord("aq-evil", "evil", "air_quality"))
    secure.push(conn, ["aq-evil"], {"aq-evil": secret})
    return secret


Attack = Callable[[IngestWorker, NumberedStream], None]


def stream_under_attack(
    secure: SecureBroker,
    services: Services,
    db_url: str,
    mode: SubscriptionMode,
    attack: Attack,
    label: str,
) -> tuple[StreamCount, IngestWorker]:
    """The victims' stream into a worker of ``mode``; ``attack`` runs in the middle."""
    credentials = register_devices(db_url, ["aq-victim-1", "aq-victim-2"], admin=secure.admin)
    settings = secure.worker_settings(services, ingest_subscription=mode)
    with (
        running_worker(settings, WORKER_IDS[mode]) as worker,
        NumberedStream(secure.port, credentials, rate=RATE, mix=Mix.MIXED) as stream,
    ):
        stream.start()
        wait_for(lambda: stream.acknowledged_count() >= RATE, what="the stream under way")
        attack(worker, stream)
        target = stream.acknowledged_count() + int(RATE)
        wait_for(lambda: stream.acknowledged_count() >= target, what="the stream after it")
        stream.stop()
        assert stream.wait_acknowledged(30)
        count = verify(db_url, stream, stalled_after=5)
    ATTACKS.append((label, count.total("acknowledged"), count.lost))
    return count, worker


@pytest.fixture
def stream_attack(
    secure: SecureBroker, services: Services, db_url: str
) -> Callable[[SubscriptionMode, Attack, str], tuple[StreamCount, IngestWorker]]:
    def run(mode: SubscriptionMode, attack: Attack, label: str) -> tuple[StreamCount, IngestWorker]:
        return stream_under_attack(secure, services, db_url, mode, attack, label)

    return run


def test_an_online_device_cannot_join_the_workers_share_group(
    conn: psycopg.Connection, secure: SecureBroker, attacker: str, stream_attack
) -> None:
    """Workers in shared mode; aq-evil subscribes to the share group's filters and stays
    connected through the stream: refused, it receives nothing, nothing is lost."""
    secure.sync(conn, mode="shared")
    got: list[mqtt.MQTTMessage] = []

    def attack(_worker: IngestWorker, _stream: NumberedStream) -> None:
        session = login(secure.port, "aq-evil", attacker, client_id="aq-evil")
        assert session.client is not None
        session.client.on_message = lambda _c, _u, message: got.append(message)
        for share in (
            f"$share/smartby-ingest/{PREFIX}/+/telemetry",
            f"$share/smartby-ingest/{PREFIX}/+/status",
        ):
            assert subscribe(session.client, share) == [NOT_AUTHORIZED]
        time.sleep(1)  # online in the group's place for a second of the stream
        close(session.client)

    count, _ = stream_attack("shared", attack, "share-group theft, attacker online")
    assert_nothing_lost_nor_doubled(count)
    assert got == []


def test_an_offline_persistent_session_cannot_divert_the_stream(
    conn: psycopg.Connection, secure: SecureBroker, attacker: str, stream_attack
) -> None:
    """aq-evil leaves a persistent session that tried to join the group, and goes
    offline: Mosquitto would queue a share of every message for it, had it joined."""
    secure.sync(conn, mode="shared")

    def attack(_worker: IngestWorker, _stream: NumberedStream) -> None:
        session = login(
            secure.port,
            "aq-evil",
            attacker,
            client_id="aq-evil",
            clean_start=False,
            session_expiry=3600,
        )
        assert session.client is not None
        assert subscribe(session.client, f"$share/smartby-ingest/{PREFIX}/+/telemetry") == [
            NOT_AUTHORIZED
        ]
        close(session.client)

    count, _ = stream_attack("shared", attack, "share-group theft, offline session")
    assert_nothing_lost_nor_doubled(count)


def test_a_session_that_joined_under_wider_rights_is_ended_when_they_shrink(
    conn: psycopg.Connection, secure: SecureBroker, attacker: str, stream_attack
) -> None:
    """aq-evil's role once allowed the share group (as the old ACL file did for every
    account); it joined, went offline, and its rights were brought back to the
    registry's.  Its offline session stays in the group (the plugin re-checks only
    online clients), so the reconciliation ends it: nothing is diverted."""
    secure.sync(conn, mode="shared")
    with secure.control() as control:
        for acltype, topic in (
            ("subscribeLiteral", f"$share/smartby-ingest/{PREFIX}/+/telemetry"),
            ("publishClientReceive", f"{PREFIX}/+/telemetry"),
        ):
            control.call(
                "addRoleACL",
                rolename=device_role_name("aq-evil"),
                acltype=acltype,
                topic=topic,
                allow=True,
            )
    session = login(
        secure.port,
        "aq-evil",
        attacker,
        client_id="aq-evil",
        clean_start=False,
        session_expiry=3600,
    )
    assert session.client is not None
    assert subscribe(session.client, f"$share/smartby-ingest/{PREFIX}/+/telemetry") == [1]
    close(session.client)
    report = secure.sync(conn)
    assert "aq-evil" in report.purged

    count, _ = stream_attack(
        "shared", lambda _w, _s: None, "share-group theft, session joined before tightening"
    )
    assert_nothing_lost_nor_doubled(count)
    again = login(
        secure.port, "aq-evil", attacker, client_id="aq-evil", clean_start=False, session_expiry=60
    )
    assert again.client is not None
    assert not again.session_present, "the attacker's session survived"
    close(again.client)


@pytest.mark.parametrize("clean_start", [True, False], ids=["clean-start", "resume"])
@pytest.mark.parametrize("mode", ["plain", "shared"])
def test_no_one_can_take_over_the_workers_client_id(
    conn: psycopg.Connection,
    secure: SecureBroker,
    attacker: str,
    stream_attack,
    clean_start: bool,
    mode: SubscriptionMode,
) -> None:
    """aq-evil (and an anonymous client) connect five times with the worker's client
    id: refused before the broker looks at the session, the worker stays connected."""
    secure.sync(conn, mode=mode)
    worker_id = WORKER_IDS[mode]

    def attack(worker: IngestWorker, _stream: NumberedStream) -> None:
        for _ in range(5):
            for username, password in (("aq-evil", attacker), (None, None)):
                refused = login(
                    secure.port,
                    username,
                    password,
                    client_id=worker_id,
                    clean_start=clean_start,
                    session_expiry=3600,
                )
                assert refused.client is None
                assert refused.reason.is_failure
            time.sleep(0.2)
        assert worker._generation == 0, "the worker was disconnected"
        assert worker.wait_connected(0)

    count, _ = stream_attack(
        mode, attack, f"client-id takeover of the {mode} worker, clean start {clean_start}"
    )
    assert_nothing_lost_nor_doubled(count)


def test_wildcard_sys_and_control_subscriptions_get_nothing(
    secure: SecureBroker, attacker: str, stream_attack
) -> None:
    got: list[mqtt.MQTTMessage] = []

    def attack(_worker: IngestWorker, _stream: NumberedStream) -> None:
        session = login(secure.port, "aq-evil", attacker, client_id="aq-evil")
        assert session.client is not None
        session.client.on_message = lambda _c, _u, message: got.append(message)
        for topic in ("#", f"{PREFIX}/#", f"{PREFIX}/+/telemetry", "$SYS/#", "$CONTROL/#"):
            assert subscribe(session.client, topic) == [NOT_AUTHORIZED], topic
        time.sleep(1)
        close(session.client)

    count, _ = stream_attack("plain", attack, "wildcard, $SYS and $CONTROL subscriptions")
    assert_nothing_lost_nor_doubled(count)
    assert got == []


def test_a_device_cannot_publish_as_another(
    conn: psycopg.Connection, secure: SecureBroker, attacker: str, stream_attack
) -> None:
    """aq-evil publishes forged readings on both victims' telemetry and status topics:
    refused, none stored, and the victims' stream whole."""

    def attack(_worker: IngestWorker, stream: NumberedStream) -> None:
        session = login(secure.port, "aq-evil", attacker, client_id="aq-evil")
        assert session.client is not None
        for device in stream.devices:
            for topic in (device.topic, f"{PREFIX}/{device.id}/status"):
                forged = json.dumps({"pm25": FORGED, "status": "offline"}).encode()
                assert publish(session.client, topic, forged) == NOT_AUTHORIZED
        close(session.client)

    count, _ = stream_attack("plain", attack, "publishing to another device's topics")
    assert_nothing_lost_nor_doubled(count)
    assert conn.execute("SELECT count(*) FROM readings WHERE value = %s", (FORGED,)).fetchone() == (
        0,
    )
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)


def test_a_device_cannot_publish_to_the_control_topic(
    secure: SecureBroker, attacker: str, stream_attack
) -> None:
    with secure.control() as control:
        before = read_state(control)

    def attack(_worker: IngestWorker, _stream: NumberedStream) -> None:
        session = login(secure.port, "aq-evil", attacker, client_id="aq-evil")
        assert session.client is not None
        commands = {
            "commands": [
                {
                    "command": "setDefaultACLAccess",
                    "acls": [{"acltype": "subscribe", "allow": True}],
                },
                {
                    "command": "removeClientRole",
                    "username": LOCAL_INGEST_CLIENT_ID,
                    "rolename": "smartby-ingest",
                },
                {"command": "deleteClient", "username": "aq-victim-1"},
            ]
        }
        reason = publish(
            session.client, "$CONTROL/dynamic-security/v1", json.dumps(commands).encode()
        )
        assert reason == NOT_AUTHORIZED
        close(session.client)

    count, _ = stream_attack("plain", attack, "publishing to $CONTROL")
    assert_nothing_lost_nor_doubled(count)
    with secure.control() as control:
        after = read_state(control)
    assert after.default_acl == before.default_acl
    assert (
        after.clients[LOCAL_INGEST_CLIENT_ID]["roles"]
        == before.clients[LOCAL_INGEST_CLIENT_ID]["roles"]
    )
    assert "aq-victim-1" in after.clients
