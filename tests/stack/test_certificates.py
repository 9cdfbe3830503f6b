"""The broker's CA and server certificate: made once, kept across starts, the server's
made again (by the same CA) when it nears its end or lacks a name, and a certificate
the CA did not sign left alone."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from stack.certificates import (
    RENEW_BEFORE,
    SERVER_VALIDITY,
    BrokerCertificates,
    certificate_names,
    default_names,
    ensure_broker_certificates,
    issue_client_certificate,
)

NAMES = ["localhost", "127.0.0.1", "::1", "broker.narvik.example"]
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def files(certs: BrokerCertificates) -> dict[str, bytes]:
    paths = (certs.ca_file, certs.ca_key, certs.cert_file, certs.key_file)
    return {p.name: p.read_bytes() for p in paths}


def test_the_first_start_makes_a_ca_and_a_server_certificate_it_signed(tmp_path: Path) -> None:
    certs = ensure_broker_certificates(tmp_path / "tls", NAMES, now=T0)
    assert certs.outcome == "created"
    for path in (certs.ca_file, certs.ca_key, certs.cert_file, certs.key_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    ca, server = load(certs.ca_file), load(certs.cert_file)
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert certificate_names(certs.cert_file) == sorted(NAMES)
    assert server.not_valid_after_utc - server.not_valid_before_utc > SERVER_VALIDITY


def test_later_starts_keep_both_while_they_are_good(tmp_path: Path) -> None:
    first = ensure_broker_certificates(tmp_path, NAMES, now=T0)
    before = files(first)
    later = T0 + SERVER_VALIDITY - RENEW_BEFORE - timedelta(days=1)
    again = ensure_broker_certificates(tmp_path, list(reversed(NAMES)), now=later)
    assert again.outcome == "kept"
    assert files(again) == before


@pytest.mark.parametrize(
    ("names", "days", "why"),
    [
        (NAMES, SERVER_VALIDITY.days - 20, "expires"),
        ([*NAMES, "mqtt.narvik.example"], 1, "lacks mqtt.narvik.example"),
    ],
)
def test_the_server_certificate_is_made_again_by_the_same_ca(
    tmp_path: Path, names: list[str], days: int, why: str
) -> None:
    """Near its end, or without a name devices use: a new server certificate and key,
    signed by the CA devices already trust (which stays byte for byte)."""
    first = files(ensure_broker_certificates(tmp_path, NAMES, now=T0))
    renewed = ensure_broker_certificates(tmp_path, names, now=T0 + timedelta(days=days))
    assert renewed.outcome.startswith(f"renewed ({why}"), renewed.outcome
    now = files(renewed)
    assert (now["ca.crt"], now["ca.key"]) == (first["ca.crt"], first["ca.key"])
    assert now["server.crt"] != first["server.crt"]
    assert now["server.key"] != first["server.key"]
    load(renewed.cert_file).verify_directly_issued_by(load(renewed.ca_file))
    assert set(names) <= set(certificate_names(renewed.cert_file))


def test_a_broken_server_certificate_is_made_again(tmp_path: Path) -> None:
    certs = ensure_broker_certificates(tmp_path, NAMES, now=T0)
    certs.cert_file.write_text("not a certificate")
    assert ensure_broker_certificates(tmp_path, NAMES, now=T0).outcome == "renewed (unreadable)"
    load(certs.cert_file).verify_directly_issued_by(load(certs.ca_file))


def test_a_missing_ca_key_means_a_new_ca(tmp_path: Path) -> None:
    first = files(ensure_broker_certificates(tmp_path, NAMES, now=T0))
    (tmp_path / "ca.key").unlink()
    again = ensure_broker_certificates(tmp_path, NAMES, now=T0)
    assert again.outcome == "created"
    assert files(again)["ca.crt"] != first["ca.crt"]


def test_a_certificate_another_ca_signed_is_left_alone(tmp_path: Path) -> None:
    """A real certificate (say Let's Encrypt's) put in place of ours is not replaced,
    even when it lacks a name: its owner renews it."""
    ours = ensure_broker_certificates(tmp_path / "ours", NAMES, now=T0)
    other = ensure_broker_certificates(tmp_path / "other", ["mqtt.narvik.example"], now=T0)
    for name in ("server.crt", "server.key"):
        (ours.folder / name).write_bytes((other.folder / name).read_bytes())
    before = files(ours)
    again = ensure_broker_certificates(ours.folder, NAMES, now=T0 + timedelta(days=396))
    assert again.outcome == "not ours (kept)"
    assert files(again) == before


def test_a_certificate_and_key_without_a_ca_beside_them_are_left_alone(tmp_path: Path) -> None:
    """A folder of one's own (compose's SMARTBY_MQTT_CERTS) holding only a certificate
    and its key: no CA is made, and nothing is replaced."""
    other = ensure_broker_certificates(tmp_path / "other", ["mqtt.narvik.example"], now=T0)
    own = tmp_path / "own"
    own.mkdir()
    for name in ("server.crt", "server.key"):
        (own / name).write_bytes((other.folder / name).read_bytes())
    assert ensure_broker_certificates(own, NAMES, now=T0).outcome == "not ours (kept)"
    assert sorted(p.name for p in own.iterdir()) == ["server.crt", "server.key"]


def test_a_client_certificate_is_signed_by_the_ca_for_client_authentication(
    tmp_path: Path,
) -> None:
    certs = ensure_broker_certificates(tmp_path, NAMES, now=T0)
    issue_client_certificate(certs, "aq-torget", tmp_path / "aq.crt", tmp_path / "aq.key")
    client = load(tmp_path / "aq.crt")
    client.verify_directly_issued_by(load(certs.ca_file))
    assert client.subject.rfc4514_string() == "CN=aq-torget"
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert stat.S_IMODE((tmp_path / "aq.key").stat().st_mode) == 0o600


def test_the_default_names_cover_loopback_and_this_host() -> None:
    import socket

    names = default_names()
    assert {"localhost", "127.0.0.1", "::1", socket.gethostname()} <= set(names)
