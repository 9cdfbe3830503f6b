"""An ingest worker also takes uplinks from a LoRaWAN network server's MQTT integration:
a second local Mosquitto plays the network server (with its own credentials, and TLS
with a CA of its own), fed the uplinks The Things Stack and ChirpStack document.  The
guarantees hold on that connection too: acknowledged after commit, stored once across
a restart of the worker, quarantined with a reason when unusable."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from ingest.sources import IngestService
from stack.mosquitto import MosquittoBroker
from tests.fixtures.ingest import count, wait_for
from tests.fixtures.network_server import (
    NetworkServer,
    publish_as_network_server,
    running_service,
    source,
)
from tests.fixtures.profiles import health, quarantine, readings, register_device
from tests.fixtures.services import Services
from tests.fixtures.vendors import (
    CHIRPSTACK_OBJECT,
    CHIRPSTACK_UPLINK,
    TTS_UPLINK,
    TTS_UPLINK_UNDECODED,
    chirpstack,
    tts,
)

EUI = "70b3d57ed0052f3a"


def test_uplinks_from_a_tts_integration_over_tls_are_stored_with_their_radio_health(
    services: Services,
    db_url: str,
    conn: psycopg.Connection,
    broker: MosquittoBroker,
    network_server: NetworkServer,
) -> None:
    """The worker logs in to the network server as TTS's MQTT server expects (MQTT
    3.1.1, user app@tenant, an API key as password, TLS) and stores its uplinks."""
    register_device(conn, "lora-1", "ttn-v3", "dev1", fields={"luminosity": None})
    ttn = source(network_server, "ttn", "ttn-v3", mqtt_version="3.1.1", qos=0)
    settings = services.settings(
        mqtt_port=broker.port, ingest_metrics_port=0, ingest_batch_ms=20, ingest_sources=(ttn,)
    )
    t0 = time.time() - 60
    with running_service(settings, f"test-{uuid.uuid4().hex[:6]}") as service:
        publish_as_network_server(
            network_server,
            [
                ("v3/app1@ttn/devices/dev1/up", tts(TTS_UPLINK, t0)),
                ("v3/app1@ttn/devices/dev1/up", tts(TTS_UPLINK_UNDECODED, t0 + 1)),
            ],
        )
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 1, what="the reading")
        wait_for(lambda: count(conn, "SELECT count(*) FROM quarantine") == 1, what="quarantine")
        gauge = service.metrics.registry.get_sample_value(
            "smartby_ingest_source_connected", {"source": "ttn"}
        )
    assert gauge == 1
    assert readings(conn, "lora-1") == {"temperature": [(pytest.approx(t0, abs=1e-3), 1.0)]}
    assert health(conn, "lora-1") == [(pytest.approx(t0, abs=1e-3), -35.0, 5.0, 1, None, None)]
    [(topic, reason, _, _)] = quarantine(conn)
    assert (topic, reason) == ("v3/app1@ttn/devices/dev1/up", "no_decoded_payload")


def test_a_chirpstack_source_loses_nothing_and_stores_nothing_twice_across_a_restart(
    services: Services,
    db_url: str,
    conn: psycopg.Connection,
    broker: MosquittoBroker,
    network_server: NetworkServer,
) -> None:
    """ChirpStack publishes at QoS 1 to a broker where the worker has a persistent
    session: uplinks sent while the worker is stopped arrive when it is back, an uplink
    published twice is stored once, and only committed uplinks were acknowledged."""
    register_device(conn, "lora-cs", "chirpstack-v4", EUI)
    cs = source(network_server, "cs", "chirpstack-v4", mqtt_version="5", qos=1)
    settings = services.settings(
        mqtt_port=broker.port, ingest_metrics_port=0, ingest_batch_ms=20, ingest_sources=(cs,)
    )
    client_id = f"test-{uuid.uuid4().hex[:6]}"
    t0 = time.time() - 600
    topic = f"application/17c82e96/device/{EUI}/event/up"

    def uplinks(first: int, last: int) -> list[tuple[str, bytes]]:
        return [
            (
                topic,
                chirpstack(CHIRPSTACK_UPLINK, t0 + i, EUI, object={**CHIRPSTACK_OBJECT, "pm10": i}),
            )
            for i in range(first, last)
        ]

    with running_service(settings, client_id):
        publish_as_network_server(network_server, uplinks(0, 10))
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 20, what="10 uplinks")
    publish_as_network_server(network_server, uplinks(10, 15))  # the worker is away
    with running_service(settings, client_id):
        publish_as_network_server(network_server, uplinks(14, 15))  # once more
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 30, what="15 uplinks")
        wait_for(lambda: count(conn, "SELECT count(*) FROM device_health") == 15, what="health")
    pm10 = readings(conn, "lora-cs")["pm10"]
    assert [value for _, value in pm10] == [float(i) for i in range(15)]
    assert [when for when, _ in pm10] == [pytest.approx(t0 + i, abs=1e-3) for i in range(15)]
    assert quarantine(conn) == []


def test_a_source_is_refused_without_its_credentials(
    services: Services, db_url: str, broker: MosquittoBroker, network_server: NetworkServer
) -> None:
    """A wrong API key leaves the source unconnected (the broker refuses the CONNECT),
    which the service reports instead of pretending to consume."""
    wrong = source(network_server, "ttn", "ttn-v3", password="NNSXS.WRONG")
    settings = services.settings(
        mqtt_port=broker.port, ingest_metrics_port=0, ingest_sources=(wrong,)
    )
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    service = IngestService(settings, url, client_id=f"test-{uuid.uuid4().hex[:6]}")
    service.start()
    try:
        assert service.primary.wait_connected(10)
        assert not service.sources[0].wait_connected(3)
    finally:
        for worker in service.workers:
            worker.close()
