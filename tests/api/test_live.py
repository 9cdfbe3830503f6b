"""Live data end to end: a device publishes a reading over MQTT to a broker that
enforces the registry's password file and ACL; the real ingest worker commits it;
the API (``smartby api`` in its own process) hears the commit and pushes the reading
to a Server-Sent Events client and, as a SensorThings Observation, to an anonymous
MQTT subscriber of ``v1.1/Datastreams(id)/Observations``.  Anonymous clients may
read those Observations but write nothing and read no device's telemetry.

The time from the device's publish to each arrival is measured and reported at the
end of the run; the test asserts arrival (within a generous timeout), not speed."""

from __future__ import annotations

import json
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.api_storm import ApiProcess
from devices.registry import (
    INGEST_USER,
    STA_USER,
    DeviceRecord,
    SiteRecord,
    add_device,
    hash_secret,
    new_secret,
    upsert_site,
    write_broker_files,
)
from stack.mosquitto import MosquittoBroker
from stack.ports import free_port
from tests.api.conftest import SUMMARY_LINES, assert_quiet_log
from tests.fixtures.ingest import running_worker
from tests.fixtures.mqtt import Collector, publish_one
from tests.fixtures.services import Services, make_service_root

PREFIX = "smartby"
#: generous: the requirement is 2 s; this only keeps a broken run from hanging
ARRIVAL_TIMEOUT_S = 20


@dataclass
class Broker:
    broker: MosquittoBroker
    ingest_password: str
    sta_password: str
    device_secret: str

    @property
    def port(self) -> int:
        return self.broker.port


@pytest.fixture
def broker(conn: psycopg.Connection) -> Iterator[Broker]:
    """A broker on the registry's password file and ACL, its listener open to
    anonymous clients (as the public listener is)."""
    upsert_site(
        conn, SiteRecord("torget", "Torget", "urban_background", "Narvik", 17.43, 68.44, {})
    )
    secret = add_device(conn, DeviceRecord("aq-1", "torget", "air_quality"))
    root = make_service_root("smartby-live-")
    ingest_password, sta_password = new_secret(), new_secret()
    passwd, acl = write_broker_files(
        conn, root, PREFIX, hash_secret(ingest_password), hash_secret(sta_password)
    )
    mosquitto = MosquittoBroker(
        root / "broker",
        port=free_port(),
        password_file=passwd,
        acl_file=acl,
        extra_config=["allow_anonymous true"],
    )
    mosquitto.start()
    try:
        yield Broker(mosquitto, ingest_password, sta_password, secret)
    finally:
        mosquitto.stop()
        shutil.rmtree(root, ignore_errors=True)


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
    services: Services, db_url: str, conn: psycopg.Connection, broker: Broker, tmp_path: Path
) -> None:
    """Device PUBLISH → worker commit → NOTIFY → API → SSE event and MQTT PUBLISH."""
    row = conn.execute(
        "INSERT INTO series (device_id, metric) VALUES ('aq-1', 'pm25') RETURNING id"
    ).fetchone()
    assert row is not None
    series_id = int(row[0])
    api = ApiProcess(
        db_url,
        tmp_path / "api.log",
        mqtt_host="127.0.0.1",
        mqtt_port=str(broker.port),
        sta_mqtt_publish="true",
        sta_mqtt_username=STA_USER,
        sta_mqtt_password=broker.sta_password,
        api_stream_heartbeat_s="1",
        api_rate_limit="1000000/minute",
    )
    worker_settings = services.settings(
        mqtt_port=broker.port,
        mqtt_username=INGEST_USER,
        mqtt_password=broker.ingest_password,
        mqtt_topic_prefix=PREFIX,
    )
    topic = f"v1.1/Datastreams({series_id})/Observations"
    observations = Collector(broker.port, topic)  # anonymous
    telemetry_spy = Collector(broker.port, f"{PREFIX}/#")  # anonymous: must see nothing
    sse = SseClient(f"http://127.0.0.1:{api.port}/v1/stream?metrics=pm25")
    try:
        with running_worker(worker_settings):
            sse.start()
            assert sse.connected.wait(15), "the SSE client did not connect"
            # the API publishes only once it holds the publisher's lock: wait for it
            deadline = time.monotonic() + 30
            while "publishes SensorThings Observations" not in api.log.read_text():
                assert time.monotonic() < deadline, api.log.read_text()[-2000:]
                time.sleep(0.05)
            moment = datetime.now(UTC).replace(microsecond=0)
            payload = json.dumps({"time": moment.isoformat(), "pm25": 7.5}).encode()
            published = time.time()
            publish_one(
                broker.port,
                f"{PREFIX}/aq-1/telemetry",
                payload,
                username="aq-1",
                password=broker.device_secret,
            )
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
    # anonymous clients read no device's telemetry, and may not publish Observations
    assert telemetry_spy.messages.empty()
    telemetry_spy.close()
    assert anonymous_publish_reason(broker.port, topic) == 0x87  # Not authorized
    assert anonymous_publish_reason(broker.port, f"{PREFIX}/aq-1/telemetry") == 0x87
    assert_quiet_log(api)
    sse_ms = (arrived_sse - published) * 1000
    mqtt_ms = (arrived_mqtt - published) * 1000
    SUMMARY_LINES.append(
        f"live: device publish -> SSE event {sse_ms:.0f} ms, -> MQTT Observation {mqtt_ms:.0f} ms"
    )
