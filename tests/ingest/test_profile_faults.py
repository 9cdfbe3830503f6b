"""Nothing is lost or stored twice when the ingest worker is killed (SIGKILL) in the
middle of a stream that mixes every MQTT profile: smartby JSON with and without a time,
Tasmota SENSOR messages on a local clock, time-less ESPHome states and TTS uplinks.

Each device publishes numbered QoS 1 messages with a persistent session
(`tests.fixtures.profile_stream`); the worker, a `smartby ingest` process with a stable
client id, is killed after a while and started again; afterwards every sequence number
the broker acknowledged must be stored exactly once."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import psycopg
import pytest

from stack.mosquitto import MosquittoBroker
from tests.fixtures.faults import assert_nothing_lost_nor_doubled, verify
from tests.fixtures.ingest import wait_for, worker_process
from tests.fixtures.profile_stream import MIXED_DEVICES, mixed_stream
from tests.fixtures.profiles import register_device
from tests.fixtures.services import Services

pytestmark = pytest.mark.slow

RATE = 250.0  # messages/s per device


def started(log: Path) -> bool:
    return log.exists() and "consuming from" in log.read_text()


def test_a_kill_9_in_a_mixed_profile_stream_loses_nothing_and_stores_nothing_twice(
    services: Services,
    db_url: str,
    conn: psycopg.Connection,
    broker: MosquittoBroker,
    tmp_path: Path,
) -> None:
    for device_id, profile, key in MIXED_DEVICES:
        register_device(conn, device_id, profile, key)
    client_id = f"mixed-{uuid.uuid4().hex[:6]}"
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    worker = worker_process(services, "smartby", client_id, logs[0], mqtt_port=broker.port)
    try:
        wait_for(lambda: started(logs[0]), what="the first worker subscribed")
        with mixed_stream(broker.port, RATE) as stream:
            stream.start()
            wait_for(lambda: stream.acknowledged_count() >= 2000, what="2 s of the stream")
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
            killed_at = stream.acknowledged_count()
            wait_for(
                lambda: stream.acknowledged_count() >= killed_at + 500,
                what="the stream going on while the worker is dead",
            )
            worker = worker_process(services, "smartby", client_id, logs[1], mqtt_port=broker.port)
            wait_for(lambda: started(logs[1]), what="the worker back and subscribed")
            resumed_at = stream.acknowledged_count()
            wait_for(
                lambda: stream.acknowledged_count() >= resumed_at + 2000,
                what="2 s more of the stream",
            )
            stream.stop()
            assert stream.wait_acknowledged(60), "the broker never answered some messages"
            count = verify(db_url, stream, timeout=120)
    finally:
        worker.kill()
        worker.wait(30)
    assert_nothing_lost_nor_doubled(count)
    stored = {d.device: d.stored for d in count.devices}
    assert all(stored[device] > 500 for device, _, _ in MIXED_DEVICES), stored
    assert count.total("quarantined") == 0
    assert count.total("stored") == count.total("acknowledged") == stream.sent
