"""The SensorThings MQTT stream (``v1.1/...``) for anonymous readers lives on a broker
of its own, fed by a bridge: anonymous clients on the platform's broker could take
over any session by its client id.

First the reason, tested: on one broker with anonymous access (the plugin's anonymous
group allowed to read ``v1.1/#``), an anonymous client that connects with the ingest
worker's client id takes the worker's session over, and what arrives meanwhile is
lost.  Then the public broker as `smartby up` runs it: readers get what the publisher
account publishes on the platform's broker, may publish nothing, see nothing else,
and nothing they do reaches the platform's broker.
"""

from __future__ import annotations

import json
import queue
import shutil

import paho.mqtt.client as mqtt

from core.broker import (
    LOCAL_INGEST_CLIENT_ID,
    PUBLIC_BRIDGE_USER,
    STA_PUBLISHER_USER,
    STA_TOPICS,
)
from devices.broker_plan import PlatformAccounts, write_dynsec_file
from stack.mosquitto import (
    DynamicSecurity,
    MosquittoBroker,
    find_dynsec_plugin,
    find_mosquitto,
)
from stack.ports import free_port
from tests.fixtures.ingest import wait_for
from tests.fixtures.secure import PREFIX, close, login, publish, subscribe
from tests.fixtures.services import Services

NOT_AUTHORIZED = 0x87


def test_an_anonymous_client_takes_over_a_session_on_a_broker_it_shares(
    services: Services,
) -> None:
    """Why the stream needs a broker of its own (Mosquitto 2.0.11 and 2.0.21 alike): the
    worker's account is bound to its client id, but that binds the account, not the
    id; an anonymous client may connect under it, and the broker hands it the
    worker's session."""
    root = services.root / f"anonymous-{free_port()}"
    binary = find_mosquitto()
    config = root / "dynamic-security.json"
    accounts = PlatformAccounts(
        "smartby", "plain", (LOCAL_INGEST_CLIENT_ID,), "ingest-pw", admin_password="a"
    )
    document_plan = accounts.plan([], hashed=True)
    write_dynsec_file(config, document_plan)
    document = json.loads(config.read_text())
    document["roles"].append(
        {
            "rolename": "anonymous-readers",
            "acls": [
                {"acltype": "subscribePattern", "topic": STA_TOPICS, "allow": True, "priority": 0},
                {
                    "acltype": "publishClientReceive",
                    "topic": STA_TOPICS,
                    "allow": True,
                    "priority": 0,
                },
            ],
        }
    )
    document["groups"] = [
        {"groupname": "anonymous", "roles": [{"rolename": "anonymous-readers"}], "clients": []}
    ]
    document["anonymousGroup"] = "anonymous"
    config.write_text(json.dumps(document))
    plugin = DynamicSecurity(find_dynsec_plugin(binary), config, allow_anonymous=True)
    broker = MosquittoBroker(root, port=free_port(), binary=binary, dynsec=plugin)
    broker.start()
    try:
        worker = login(
            broker.port, LOCAL_INGEST_CLIENT_ID, "ingest-pw", client_id=LOCAL_INGEST_CLIENT_ID,
            clean_start=False, session_expiry=3600,
        )  # fmt: skip
        assert worker.client is not None
        dropped: queue.Queue[int] = queue.Queue()
        worker.client.on_disconnect = lambda _c, _u, _f, reason, _p: dropped.put(reason.value)
        assert subscribe(worker.client, "smartby/+/telemetry") == [1]
        intruder = login(
            broker.port, None, None, client_id=LOCAL_INGEST_CLIENT_ID, clean_start=False,
            session_expiry=3600,
        )  # fmt: skip
        assert intruder.client is not None, "anonymous access is off: nothing was tested"
        assert intruder.session_present, "the anonymous client did not get the session"
        assert dropped.get(timeout=10) in (0x80, 0x8E)  # session taken over (2.0.11, 2.0.21)
        worker.client.loop_stop()
        close(intruder.client)
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_anonymous_readers_get_the_stream_and_nothing_else(stream_brokers) -> None:  # type: ignore[no-untyped-def]
    secure, public, publisher_password = stream_brokers
    reader = login(public.port, None, None)
    assert reader.client is not None
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    reader.client.on_message = lambda _c, _u, message: got.put(message)
    assert subscribe(reader.client, "v1.1/Datastreams(7)/Observations") == [1]
    assert subscribe(reader.client, "#") in ([1], [NOT_AUTHORIZED])  # reads v1.1/ at most
    publisher = login(
        secure.port, STA_PUBLISHER_USER, publisher_password, client_id=STA_PUBLISHER_USER
    )
    assert publisher.client is not None
    try:
        observation = b'{"result": 12.5, "phenomenonTime": "2026-01-01T00:00:00Z"}'

        def delivered() -> bool:
            # the bridge subscribes when it connects: publish until the reader has one
            publish(publisher.client, "v1.1/Datastreams(7)/Observations", observation)
            try:
                message = got.get(timeout=0.2)
            except queue.Empty:
                return False
            return message.topic.startswith("v1.1/") and message.payload == observation

        wait_for(delivered, timeout=10, what="the observation at the public reader")
        # the publisher may publish the stream only
        assert publish(publisher.client, "smartby/aq-1/telemetry", b'{"pm25": 1}') == NOT_AUTHORIZED
        assert subscribe(publisher.client, "#") == [NOT_AUTHORIZED]
        # the reader may publish nothing, not even into the stream
        reader.client.publish("v1.1/Datastreams(7)/Observations", b"forged", qos=1)
        publish(publisher.client, "v1.1/Datastreams(7)/Observations", b"marker")
        wait_for(lambda: got.get(timeout=5).payload == b"marker", what="the marker")
        while not got.empty():
            assert got.get().payload != b"forged"
    finally:
        close(publisher.client)
        close(reader.client)


def retained(port: int, topic: str, timeout: float = 10) -> mqtt.MQTTMessage:
    """What a reader who connects now gets at once on ``topic`` (its retained message)."""
    reader = login(port, None, None)
    assert reader.client is not None
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    reader.client.on_message = lambda _c, _u, message: got.put(message)
    try:
        assert subscribe(reader.client, topic) == [1]
        return got.get(timeout=timeout)
    finally:
        close(reader.client)


def test_readers_get_a_stations_latest_warning_whenever_they_connect(stream_brokers) -> None:  # type: ignore[no-untyped-def]
    """The ingest account publishes each station's CAP warnings retained
    (`ingest.warnings`); the bridge carries them, retained, to the public broker, so a
    resident's app that connects at any time gets the latest at once.  The ingest
    account may publish there and nowhere else."""
    secure, public, _ = stream_brokers
    topic = f"{PREFIX}/public/warnings/narvik-sentrum"
    worker = login(
        secure.port,
        LOCAL_INGEST_CLIENT_ID,
        secure.ingest_password,
        client_id=LOCAL_INGEST_CLIENT_ID,
    )
    assert worker.client is not None
    try:
        for text in (b"<alert>first</alert>", b"<alert>update</alert>"):
            info = worker.client.publish(topic, text, qos=1, retain=True)
            info.wait_for_publish(10)

            def latest(expected: bytes = text) -> bool:
                try:
                    message = retained(public.port, topic, timeout=1)
                except queue.Empty:  # the bridge has not connected yet
                    return False
                return message.payload == expected and message.retain

            wait_for(latest, timeout=15, what=f"{text!r} retained at the public broker")
        assert publish(worker.client, f"{PREFIX}/public/other", b"x") == NOT_AUTHORIZED
        assert publish(worker.client, "v1.1/Datastreams(1)/Observations", b"x") == NOT_AUTHORIZED
    finally:
        close(worker.client)


def test_nothing_a_public_reader_does_reaches_the_platforms_broker(
    stream_brokers, services: Services
) -> None:  # type: ignore[no-untyped-def]
    """A reader on the public broker under the worker's client id takes nothing over:
    the worker's session is on the other broker, which admits no anonymous client."""
    secure, public, _ = stream_brokers
    worker = login(
        secure.port,
        LOCAL_INGEST_CLIENT_ID,
        secure.ingest_password,
        client_id=LOCAL_INGEST_CLIENT_ID,
    )
    assert worker.client is not None
    dropped: queue.Queue[int] = queue.Queue()
    worker.client.on_disconnect = lambda _c, _u, _f, reason, _p: dropped.put(reason.value)
    try:
        for client_id in (LOCAL_INGEST_CLIENT_ID, PUBLIC_BRIDGE_USER, STA_PUBLISHER_USER):
            reader = login(public.port, None, None, client_id=client_id)
            assert reader.client is not None
            close(reader.client)
            assert login(secure.port, None, None, client_id=client_id).client is None
        assert dropped.empty(), "the worker was disconnected"
        assert worker.client.is_connected()
    finally:
        close(worker.client)
