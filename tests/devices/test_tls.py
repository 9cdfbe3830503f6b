"""Devices reach the broker over TLS: the broker's TLS listener (set up as ``smartby up``
sets it up, with the CA and server certificate it makes) takes a device that trusts
the CA and whose password is right, and the worker stores its readings; a client
without the CA, or connecting under a name the certificate does not carry, fails
verification; the plain listener still works beside it.  Client certificates are
optional (``require_certificate``), and Mosquitto takes a renewed server certificate
on SIGHUP, as the README's certbot hook expects."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion

from core.broker import LOCAL_INGEST_CLIENT_ID, ClientTls
from devices.catalogue import load_catalogue, narvik_catalogue_path
from devices.provision import import_catalogue
from devices.registry import DeviceRecord, SiteRecord, add_device, upsert_site
from devices.simulation import Simulator
from stack.certificates import (
    BrokerCertificates,
    ensure_broker_certificates,
    issue_client_certificate,
)
from stack.mosquitto import MosquittoBroker, TlsListener
from stack.ports import free_port
from tests.fixtures.ingest import count, running_worker, wait_for
from tests.fixtures.secure import PREFIX, SecureBroker, close, login, publish
from tests.fixtures.services import Services


@pytest.fixture
def device(conn: psycopg.Connection, secure: SecureBroker) -> str:
    """aq-tls, registered and pushed to the broker with its secret (returned)."""
    upsert_site(
        conn, SiteRecord("torget", "Torget", "urban_background", "Narvik", 17.43, 68.44, {})
    )
    secret = add_device(conn, DeviceRecord("aq-tls", "torget", "air_quality"))
    secure.push(conn, ["aq-tls"], {"aq-tls": secret})
    return secret


def test_a_device_with_the_ca_connects_over_tls_and_its_readings_are_stored(
    conn: psycopg.Connection, secure: SecureBroker, services: Services, device: str
) -> None:
    """CONNECT over TLS (verifying the broker against the generated CA) with the
    device's password; the QoS 1 PUBLISH is acknowledged and the worker, on the plain
    listener, stores it.  The same device then publishes over the plain listener too."""
    settings = secure.worker_settings(services)
    with running_worker(settings, LOCAL_INGEST_CLIENT_ID):
        over_tls = login(
            secure.tls_port, "aq-tls", device, client_id="aq-tls", tls=secure.client_tls
        )
        assert over_tls.client is not None, over_tls.reason
        try:
            sock = over_tls.client.socket()
            assert isinstance(sock, ssl.SSLSocket)
            assert sock.version() in ("TLSv1.2", "TLSv1.3")
            topic = f"{PREFIX}/aq-tls/telemetry"
            assert publish(over_tls.client, topic, b'{"pm25": 4.5}') == 0
        finally:
            close(over_tls.client)
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 1, what="its reading")

        plain = login(secure.port, "aq-tls", device, client_id="aq-tls")
        assert plain.client is not None, plain.reason
        try:
            assert publish(plain.client, f"{PREFIX}/aq-tls/telemetry", b'{"pm25": 5.5}') == 0
        finally:
            close(plain.client)
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 2, what="the second")
    values = conn.execute("SELECT value FROM readings ORDER BY value").fetchall()
    assert values == [(4.5,), (5.5,)]


def test_over_tls_the_password_is_still_checked(secure: SecureBroker, device: str) -> None:
    wrong = login(secure.tls_port, "aq-tls", "not-its-secret", tls=secure.client_tls)
    assert wrong.client is None
    assert wrong.reason.value in (0x86, 0x87)  # bad user name or password / not authorized


def test_a_client_without_the_ca_fails_verification(secure: SecureBroker, device: str) -> None:
    """With the system's trusted CAs only, the handshake fails before any CONNECT: the
    password never leaves the client."""
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        login(secure.tls_port, "aq-tls", device, client_id="aq-tls", tls=ClientTls())


def test_a_name_the_certificate_does_not_carry_fails_verification(
    secure: SecureBroker,
) -> None:
    """The CA is trusted, but the broker is asked for as another host (RFC 6125 §6):
    the handshake fails, as it does for a device pointed at the wrong name."""
    context = ssl.create_default_context(cafile=str(secure.certificates.ca_file))
    with (
        socket.create_connection(("127.0.0.1", secure.tls_port), timeout=10) as sock,
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        context.wrap_socket(sock, server_hostname="mqtt.elsewhere.example")
    # and the names it carries pass
    for name in ("localhost", "127.0.0.1"):
        with (
            socket.create_connection(("127.0.0.1", secure.tls_port), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname=name) as tls,
        ):
            assert tls.version() is not None


def test_the_simulator_publishes_over_tls(
    conn: psycopg.Connection, secure: SecureBroker, services: Services
) -> None:
    """`smartby simulate` with SMARTBY_MQTT_TLS: a catalogue device's messages go over
    the TLS listener (paho driven by the simulator's own select loop, which must also
    serve what TLS has buffered) and every one is stored."""
    narvik = load_catalogue(narvik_catalogue_path())
    secrets = import_catalogue(conn, narvik).devices_created
    secure.push(conn, ["aq-sentrum"], {"aq-sentrum": secrets["aq-sentrum"]})
    settings = secure.worker_settings(services)
    with running_worker(settings, LOCAL_INGEST_CLIENT_ID):
        simulator = Simulator(
            [narvik.device("aq-sentrum")],
            port=secure.tls_port,
            prefix=PREFIX,
            credentials={"aq-sentrum": secrets["aq-sentrum"]},
            tls=secure.client_tls,
        )
        with simulator:
            report = simulator.backfill(3 * 3600.0)
        assert report.messages >= 3 * 60 - 1  # one a minute
        wait_for(
            lambda: count(conn, "SELECT count(DISTINCT time) FROM readings") == report.messages,
            what="every simulated message's readings",
        )
    assert count(conn, "SELECT count(*) FROM quarantine") == 0


# --------------------------------------------------- a broker of its own per test


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[MosquittoBroker, BrokerCertificates]]:
    """An anonymous broker whose TLS listener requires a client certificate of its CA."""
    certs = ensure_broker_certificates(tmp_path / "tls", ["localhost", "127.0.0.1"])
    broker = MosquittoBroker(
        tmp_path / "mosquitto",
        port=free_port(),
        tls=TlsListener(
            free_port(),
            certs.cert_file,
            certs.key_file,
            ca_file=certs.ca_file,
            require_certificate=True,
        ),
    )
    broker.start()
    try:
        yield broker, certs
    finally:
        broker.stop()


def connack(port: int, tls: ClientTls) -> str:
    """CONNECT over TLS; "accepted", or how it failed (handshake or connection lost)."""
    done = threading.Event()
    result: list[str] = []
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"tls-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    client.tls_set(tls.ca_file, tls.cert_file, tls.key_file)
    client.on_connect = lambda _c, _u, _f, reason, _p: (result.append(str(reason)), done.set())
    client.on_disconnect = lambda _c, _u, _f, reason, _p: (
        result.append(f"lost ({reason})"),
        done.set(),
    )
    try:
        client.connect("127.0.0.1", port)
    except (ssl.SSLError, OSError) as exc:
        return f"handshake failed ({exc})"
    client.loop_start()
    try:
        assert done.wait(10), "neither CONNACK nor a closed connection"
    finally:
        client.disconnect()
        client.loop_stop()
    return "accepted" if result[0] == "Success" else result[0]


def test_a_required_client_certificate_of_the_ca_is_accepted_and_its_absence_refused(
    tls_broker: tuple[MosquittoBroker, BrokerCertificates], tmp_path: Path
) -> None:
    broker, certs = tls_broker
    assert broker.tls is not None
    issue_client_certificate(certs, "aq-cert", tmp_path / "aq.crt", tmp_path / "aq.key")
    with_cert = ClientTls(str(certs.ca_file), str(tmp_path / "aq.crt"), str(tmp_path / "aq.key"))
    assert connack(broker.tls.port, with_cert) == "accepted"
    # refused in the handshake (TLS 1.3: the client learns it as the connection is cut)
    without = connack(broker.tls.port, ClientTls(str(certs.ca_file)))
    assert without.startswith(("handshake failed", "lost")), without
    # a certificate from another CA is refused as well
    other = ensure_broker_certificates(tmp_path / "other", ["localhost"])
    issue_client_certificate(other, "aq-cert", tmp_path / "x.crt", tmp_path / "x.key")
    foreign = ClientTls(str(certs.ca_file), str(tmp_path / "x.crt"), str(tmp_path / "x.key"))
    refused = connack(broker.tls.port, foreign)
    assert refused.startswith(("handshake failed", "lost")), refused


def served_serial(port: int, ca_file: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_a_renewed_server_certificate_is_served_after_sighup(tmp_path: Path) -> None:
    """What a renewal hook does (README, "TLS for devices"): new files in place, then
    SIGHUP; new connections get the new certificate, from the same broker process."""
    certs = ensure_broker_certificates(tmp_path / "tls", ["localhost", "127.0.0.1"])
    port = free_port()
    broker = MosquittoBroker(
        tmp_path / "mosquitto",
        port=free_port(),
        tls=TlsListener(port, certs.cert_file, certs.key_file),
    )
    broker.start()
    try:
        assert broker.proc is not None
        before = served_serial(port, certs.ca_file)
        names = ["localhost", "127.0.0.1", "mqtt.narvik.example"]
        renewed = ensure_broker_certificates(certs.folder, names)
        assert renewed.outcome == "renewed (lacks mqtt.narvik.example)"
        assert served_serial(port, certs.ca_file) == before  # not before the signal
        os.kill(broker.proc.pid, signal.SIGHUP)
        wait_for(
            lambda: served_serial(port, certs.ca_file) != before,
            timeout=10,
            what="the renewed certificate after SIGHUP",
        )
        assert broker.proc.poll() is None  # reloaded, not restarted
    finally:
        broker.stop()


def test_a_sighup_keeps_tls_devices_connected_and_their_accounts_working(
    conn: psycopg.Connection, secure: SecureBroker, services: Services, device: str
) -> None:
    """The renewal hook's SIGHUP on the platform's broker (dynamic security plugin): the
    renewed certificate is served, a device connected over TLS stays connected and
    publishes on, and a new TLS login with its password still works."""
    assert secure.broker.proc is not None
    settings = secure.worker_settings(services)
    with running_worker(settings, LOCAL_INGEST_CLIENT_ID):
        before = login(secure.tls_port, "aq-tls", device, client_id="aq-tls", tls=secure.client_tls)
        assert before.client is not None, before.reason
        disconnected = threading.Event()
        before.client.on_disconnect = lambda *_args: disconnected.set()
        try:
            # a renewal, as certbot's hook does it: new files in place, then SIGHUP
            served = served_serial(secure.tls_port, secure.certificates.ca_file)
            names = ["localhost", "127.0.0.1", "mqtt.narvik.example"]
            ensure_broker_certificates(secure.certificates.folder, names)
            os.kill(secure.broker.proc.pid, signal.SIGHUP)
            wait_for(
                lambda: served_serial(secure.tls_port, secure.certificates.ca_file) != served,
                timeout=10,
                what="the renewed certificate after SIGHUP",
            )
            assert publish(before.client, f"{PREFIX}/aq-tls/telemetry", b'{"pm25": 1.5}') == 0
            assert not disconnected.is_set()
        finally:
            close(before.client)
        after = login(secure.tls_port, "aq-tls", device, client_id="aq-tls", tls=secure.client_tls)
        assert after.client is not None, after.reason
        try:
            assert publish(after.client, f"{PREFIX}/aq-tls/telemetry", b'{"pm25": 2.5}') == 0
        finally:
            close(after.client)
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 2, what="both readings")


def test_the_readmes_mosquitto_pub_over_tls(
    conn: psycopg.Connection, secure: SecureBroker, services: Services, device: str
) -> None:
    """README, "TLS for devices": `mosquitto_pub -h localhost -p 8883 --cafile ...`."""
    import shlex
    import subprocess

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    line = next(
        line for line in readme.splitlines() if line.startswith("mosquitto_pub -h localhost")
    )
    words = shlex.split(line)
    words[words.index("-p") + 1] = str(secure.tls_port)
    words[words.index("--cafile") + 1] = str(secure.certificates.ca_file)
    words = [w.replace("aq-test", "aq-tls") for w in words]
    words[words.index("-P") + 1] = device
    with running_worker(secure.worker_settings(services), LOCAL_INGEST_CLIENT_ID):
        sent = subprocess.run(words, capture_output=True, text=True, timeout=30, check=False)
        assert sent.returncode == 0, sent.stderr
        wait_for(lambda: count(conn, "SELECT count(*) FROM readings") == 1, what="its reading")
