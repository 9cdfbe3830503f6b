"""Live data end to end: a device publishes a reading over MQTT to the platform's
broker (Mosquitto's dynamic security plugin, accounts from the registry, every
account bound to its client id: `tests.fixtures.secure`); the real ingest worker
commits it; the API (``smartby api`` in its own process) hears the commit and pushes
the reading to a Server-Sent Events client and, as a SensorThings Observation, to the
platform's broker as ``smartby-sta-publisher``; the bridge carries it to the public
broker, where an anonymous reader subscribed to ``v1.1/Datastreams(id)/Observations``
gets it.  Anonymous readers there may publish nothing and read no device's telemetry.

The time from the device's publish to each arrival is measured and reported at the
end of the run; the test asserts arrival (within a generous timeout), not speed."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from api.sensorthings.routes import MQTT_RECEIVE
from bench.api_storm import ApiProcess
from core.broker import LOCAL_INGEST_CLIENT_ID
from devices.registry import DeviceRecord, SiteRecord, add_device, upsert_site
from stack.mosquitto import MosquittoBroker
from tests.api.conftest import SUMMARY_LINES, assert_quiet_log
from tests.fixtures.ingest import running_worker, wait_for
from tests.fixtures.mqtt import Collector, publish_one
from tests.fixtures.secure import PREFIX, SecureBroker
from tests.fixtures.services import Services

#: generous: the requirement is 2 s; this only keeps a broken run from hanging
ARRIVAL_TIMEOUT_S = 20
NOT_AUTHORIZED = 0x87


#: what the API logs once its publisher is connected (`api.sensorthings.mqtt`)
CONNECTED = "publisher is connected as smartby-sta-publisher"


def registered_device(conn: psycopg.Connection, secure: SecureBroker) -> tuple[str, int]:
    """aq-1 in the registry and on the broker, with a pm25 series: (secret, series id)."""
    upsert_site(
        conn, SiteRecord("torget", "Torget", "urban_background", "Narvik", 17.43, 68.44, {})
    )
    secret = add_device(conn, DeviceRecord("aq-1", "torget", "air_quality"))
    secure.push(conn, ["aq-1"], {"aq-1": secret})
    row = conn.execute(
        "INSERT INTO series (device_id, metric) VALUES ('aq-1', 'pm25') RETURNING id"
    ).fetchone()
    assert row is not None
    return secret, int(row[0])


def device_publish(secure: SecureBroker, secret: str, payload: bytes) -> None:
    publish_one(
        secure.port,
        f"{PREFIX}/aq-1/telemetry",
        payload,
        username="aq-1",
        password=secret,
        client_id="aq-1",
    )


def publishing_api(
    db_url: str, log: Path, secure: SecureBroker, public: MosquittoBroker, password: str
) -> ApiProcess:
    """``smartby api`` publishing the SensorThings stream on the secure broker."""
    return ApiProcess(
        db_url,
        log,
        mqtt_host="127.0.0.1",
        mqtt_port=str(secure.port),
        sta_mqtt_publish="true",
        sta_publisher_password=password,
        sta_mqtt_public_url=f"mqtt://127.0.0.1:{public.port}",
        api_stream_heartbeat_s="1",
        api_rate_limit="1000000/minute",
    )


class SseClient(threading.Thread):
    """Reads a stream in the background; each event with the time it arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="sse-client")
        self.url = url
        self.events: queue.Queue[tuple[float, str, dict[str, object]]] = queue.Queue()
        self.connected = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        # reads time out only if even the heartbeats (1 s) stop
        timeout = httpx.Timeout(30, read=30)
        with httpx.Client(timeout=timeout) as client, client.stream("GET", self.url) as response:
            assert response.status_code == 200, response.read()
            self.connected.set()
            kind, data = "message", ""
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("event:"):
                    kind = line.partition(":")[2].strip()
                elif line.startswith("data:"):
                    data = line.partition(":")[2].strip()
                elif line == "" and data:
                    self.events.put((time.time(), kind, json.loads(data)))
                    kind, data = "message", ""


def anonymous_publish_reason(port: int, topic: str) -> int:
    """The reason code of the broker's PUBACK to an anonymous QoS 1 publish (MQTT v5
    §3.4.2.1)."""
    acked: queue.Queue[int] = queue.Queue()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"anon-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    client.on_publish = lambda _c, _u, _mid, reason, _p: acked.put(reason.value)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, b'{"result": 1}', qos=1)
        return acked.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_device_reading_reaches_sse_and_mqtt_subscribers(
    services: Services,
    db_url: str,
    conn: psycopg.Connection,
    stream_brokers: tuple[SecureBroker, MosquittoBroker, str],
    tmp_path: Path,
) -> None:
    """Device PUBLISH → worker commit → NOTIFY → API → SSE event, and MQTT PUBLISH on
    the platform's broker → bridge → anonymous reader on the public broker."""
    secure, public, publisher_password = stream_brokers
    device_secret, series_id = registered_device(conn, secure)
    api = publishing_api(db_url, tmp_path / "api.log", secure, public, publisher_password)
    topic = f"v1.1/Datastreams({series_id})/Observations"
    observations = Collector(public.port, topic)  # anonymous, on the public broker
    telemetry_spy = Collector(public.port, f"{PREFIX}/#")  # anonymous: must see nothing
    sse = SseClient(f"http://127.0.0.1:{api.port}/v1/stream?metrics=pm25")
    try:
        with running_worker(secure.worker_settings(services), LOCAL_INGEST_CLIENT_ID):
            sse.start()
            assert sse.connected.wait(15), "the SSE client did not connect"
            # the API publishes only once it holds the publisher's lock and the broker
            # took its account: wait for both
            wait_for(lambda: CONNECTED in api.log.read_text(), timeout=30, what="the publisher")
            root = httpx.get(f"http://127.0.0.1:{api.port}/sta/v1.1", timeout=10).json()
            endpoints = root["serverSettings"]
            moment = datetime.now(UTC).replace(microsecond=0)
            payload = json.dumps({"time": moment.isoformat(), "pm25": 7.5}).encode()
            published = time.time()
            device_publish(secure, device_secret, payload)
            arrived_sse, kind, reading = sse.events.get(timeout=ARRIVAL_TIMEOUT_S)
            message = observations.get(timeout=ARRIVAL_TIMEOUT_S)
            arrived_mqtt = time.time()
    finally:
        sse.stop.set()
        observations.close()
        api.stop()
    assert kind == "reading"
    assert reading["series_id"] == series_id
    assert reading["value"] == 7.5
    assert reading["quality"] in (1, 2)
    observation = json.loads(message.payload)
    assert observation["result"] == 7.5
    assert observation["phenomenonTime"] == moment.isoformat().replace("+00:00", "Z")
    assert observation["@iot.id"] == f"{series_id}-{int(moment.timestamp()) * 1_000_000}"
    assert observation["resultQuality"]["result"]["value"] == reading["quality"]
    # the service root announces where the public subscribes (OGC 18-088 §14.2)
    assert MQTT_RECEIVE in endpoints["conformance"]
    assert endpoints[MQTT_RECEIVE]["endpoints"] == [f"mqtt://127.0.0.1:{public.port}"]
    # anonymous readers read no device's telemetry, and may publish nothing
    assert telemetry_spy.messages.empty()
    telemetry_spy.close()
    assert anonymous_publish_reason(public.port, topic) == NOT_AUTHORIZED
    assert anonymous_publish_reason(public.port, f"{PREFIX}/aq-1/telemetry") == NOT_AUTHORIZED
    assert_quiet_log(api)
    sse_ms = (arrived_sse - published) * 1000
    mqtt_ms = (arrived_mqtt - published) * 1000
    SUMMARY_LINES.append(
        f"live: device publish -> SSE event {sse_ms:.0f} ms,"
        f" -> MQTT Observation at the public broker {mqtt_ms:.0f} ms"
    )


def test_one_of_two_api_processes_publishes_and_the_other_takes_over(
    services: Services,
    db_url: str,
    conn: psycopg.Connection,
    stream_brokers: tuple[SecureBroker, MosquittoBroker, str],
    tmp_path: Path,
) -> None:
    """The publisher's account is bound to one client id, and a broker hands a client
    id's session to its newest connection (MQTT v5 §3.1.4), so two publishers would
    throw each other out.  Of two API processes only the one holding the advisory lock
    connects: each Observation reaches the reader once.  When it stops, the other
    takes the lock, connects and publishes."""
    secure, public, password = stream_brokers
    secret, _ = registered_device(conn, secure)
    apis = [
        publishing_api(db_url, tmp_path / f"api-{n}.log", secure, public, password)
        for n in range(2)
    ]
    reader = Collector(public.port, "v1.1/#")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    def send(value: float, seconds: int) -> None:
        moment = (start + timedelta(seconds=seconds)).isoformat()
        device_publish(secure, secret, json.dumps({"time": moment, "pm25": value}).encode())

    def results_until(marker: float) -> list[tuple[str, float]]:
        got: list[tuple[str, float]] = []
        while True:
            observation = json.loads(reader.get(timeout=ARRIVAL_TIMEOUT_S).payload)
            if observation["result"] == marker:
                return got
            got.append((observation["@iot.id"], observation["result"]))

    try:
        with running_worker(secure.worker_settings(services), LOCAL_INGEST_CLIENT_ID):
            wait_for(
                lambda: any(CONNECTED in api.log.read_text() for api in apis),
                timeout=30,
                what="a publisher",
            )
            first = next(n for n, api in enumerate(apis) if CONNECTED in api.log.read_text())
            other = apis[1 - first]
            for n in range(5):
                send(float(n), n)
            send(99.0, 5)
            got = results_until(99.0)
            assert sorted(value for _, value in got) == [0.0, 1.0, 2.0, 3.0, 4.0], got
            assert len({identity for identity, _ in got}) == 5
            assert CONNECTED not in other.log.read_text()

            apis[first].stop()
            wait_for(lambda: CONNECTED in other.log.read_text(), timeout=30, what="the takeover")
            send(7.0, 6)
            send(98.0, 7)
            assert [value for _, value in results_until(98.0)] == [7.0]
    finally:
        reader.close()
        for api in apis:
            api.stop()
    for api in apis:
        assert_quiet_log(api)
