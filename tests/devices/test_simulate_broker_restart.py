"""The simulator rides out a broker restart: what the broker had not acknowledged when
it went away is sent again after the simulator reconnects (QoS 1), so every message
of a backfill reaches a subscriber whose persistent session survived the restart."""

from __future__ import annotations

import logging
import shutil
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.catalogue import load_catalogue, narvik_catalogue_path
from devices.simulation import PublishReport, Simulator, simulated_messages
from stack.mosquitto import MosquittoBroker
from stack.ports import free_port
from tests.fixtures.ingest import unique_prefix, wait_for
from tests.fixtures.services import make_service_root


@pytest.mark.slow
def test_a_backfill_across_a_broker_restart_delivers_every_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="devices.simulation.publisher")
    root = make_service_root("smartby-sim-restart-")
    broker = MosquittoBroker(root / "mosquitto", port=free_port())
    broker.start()
    prefix = unique_prefix()
    devices = load_catalogue(narvik_catalogue_path()).devices
    end = 1_790_000_000.0
    span = 24 * 3600
    expected = {(t, p) for _s, t, p in simulated_messages(devices, end - span, end, 3, prefix)}

    # a subscriber with a persistent session and a plain subscription: Mosquitto keeps
    # both across a graceful restart, and queues for it while it is away
    received: set[tuple[str, bytes]] = set()
    subscribed = threading.Event()
    subscriber = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{prefix}-sub", protocol=mqtt.MQTTv5
    )
    subscriber.on_message = lambda _c, _u, m: received.add((m.topic, bytes(m.payload)))
    subscriber.on_subscribe = lambda *_a: subscribed.set()
    subscriber.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 600
    subscriber.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    subscriber.loop_start()
    subscriber.subscribe(f"{prefix}/+/telemetry", qos=1)

    report: list[PublishReport] = []
    progress: list[int] = []
    try:
        assert subscribed.wait(10)
        simulator = Simulator(devices, port=broker.port, prefix=prefix, seed=3, window=200)

        def backfill() -> None:
            with simulator:
                report.append(
                    simulator.backfill(span, end=end, progress=lambda d, _t: progress.append(d))
                )

        publisher = threading.Thread(target=backfill, name="backfill")
        publisher.start()
        wait_for(lambda: bool(progress) and progress[-1] >= len(expected) // 4, what="a quarter")
        # the broker is restarted from this (the main) thread: its parent-death signal is
        # tied to the thread that started it
        broker.stop()
        assert not report, "the backfill ended before the restart: nothing was tested"
        broker.start()
        publisher.join(120)
        assert report, "the backfill did not finish"
        wait_for(lambda: received >= expected, timeout=60, what="every message at the subscriber")
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert report[0].messages == len(expected)
    assert received == expected
    lost = [r for r in caplog.records if "lost its broker connection" in r.getMessage()]
    assert len(lost) >= len(devices) // 2, "the simulator never noticed the restart"
