"""An ingest worker also takes uplinks from a LoRaWAN network server's MQTT integration:
a second local Mosquitto plays the network server (with its own credentials, and TLS
with a CA of its own), fed the uplinks The Things Stack and ChirpStack document.  The
guarantees hold on that connection too: acknowledged after commit, stored once across
a restart of the worker, quarantined with a reason when unusable."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from core.settings import IngestSource, Settings
from db.registry import hash_secret
from ingest.sources import IngestService
from stack.mosquitto import MosquittoBroker
from stack.ports import free_port
from tests.fixtures.ingest import count, wait_for
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
NS_USER, NS_PASSWORD = "app1@ttn", "NNSXS.TESTKEY.0123456789"


@dataclass
class NetworkServer:
    broker: MosquittoBroker
    tls_port: int
    ca_file: Path

    @property
    def port(self) -> int:
        return self.broker.port


def _certificates(folder: Path) -> Path:
    """A CA of the test's own and a server certificate for 127.0.0.1 it signed."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=smartby test network server CA",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
    )  # fmt: skip
    return folder / "ca.crt"


@pytest.fixture
def network_server(tmp_path: Path) -> Iterator[NetworkServer]:
    """A Mosquitto playing a network server's MQTT integration: passwords required, a
    plain listener (where the test publishes as the network server) and a TLS one."""
    ca_file = _certificates(tmp_path / "tls")
    passwd = tmp_path / "passwd"
    passwd.write_text(f"{NS_USER}:{hash_secret(NS_PASSWORD)}\n")
    passwd.chmod(0o600)
    tls_port = free_port()
    mosquitto = MosquittoBroker(
        tmp_path / "ns",
        port=free_port(),
        password_file=passwd,
        extra_config=[
            f"listener {tls_port} 127.0.0.1",
            f"certfile {tmp_path / 'tls' / 'server.crt'}",
            f"keyfile {tmp_path / 'tls' / 'server.key'}",
        ],
    )
    mosquitto.start()
    try:
        yield NetworkServer(mosquitto, tls_port, ca_file)
    finally:
        mosquitto.stop()


@contextmanager
def running_service(settings: Settings, client_id: str) -> Iterator[IngestService]:
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    service = IngestService(settings, url, client_id=client_id)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    service.start()
    thread = threading.Thread(target=run, name="ingest-service", daemon=True)
    thread.start()
    try:
        assert service.wait_connected(15), "ingest did not connect to every source"
        yield service
    finally:
        service.stop()
        thread.join(30)
        assert not thread.is_alive(), "ingest service did not stop"
        if errors:
            raise errors[0]


def publish_as_network_server(ns: NetworkServer, messages: list[tuple[str, bytes]]) -> None:
    """Publish as the network server does, logged in at its broker."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"ns-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(NS_USER, NS_PASSWORD)
    client.connect("127.0.0.1", ns.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def source(ns: NetworkServer, name: str, profile: str, **options: object) -> IngestSource:
    """The network server as a source: its TLS listener, its CA, its credentials."""
    values: dict[str, object] = {
        "name": name,
        "profile": profile,
        "host": "127.0.0.1",
        "port": ns.tls_port,
        "username": NS_USER,
        "password": NS_PASSWORD,
        "tls": True,
        "ca_file": ns.ca_file,
        **options,
    }
    return IngestSource.model_validate(values)


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
