"""The broker's TLS certificates: a private CA and a server certificate it signs.

``smartby up`` (and compose's ``broker-config``) make them on the first start and keep
them after: devices are given the CA file once, so the CA must outlive restarts.  The
server certificate is made again, signed by the same CA, when it is close to expiry,
when its names (subjectAltName, RFC 5280 §4.2.1.6) lack one a device may connect with,
or when it no longer matches its key or its CA; devices notice nothing, since they
trust the CA, not the certificate.

A server certificate this folder's CA did not sign (a real one, e.g. Let's Encrypt's,
put there by its owner), or one with no CA beside it, is never touched:
`ensure_broker_certificates` only reports it.

Keys are ECDSA P-256 (fast to make, and what TLS 1.2/1.3 stacks on small devices,
mbedTLS and BearSSL, support), written 0600.  Validity: the CA 10 years; the server
certificate 397 days, the longest that clients which cap certificate lifetimes
(Apple's platforms, browsers) accept, renewed 30 days before its end.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stack.process import StackError

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"

CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=397)
#: a server certificate with less left than this is made again at the next start
RENEW_BEFORE = timedelta(days=30)
#: a CA with less left than this is made again (devices then need the new CA file)
CA_RENEW_BEFORE = timedelta(days=365)
#: clock skew between us and a device: certificates are valid from a little earlier
_BACKDATE = timedelta(minutes=5)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CertificateError(StackError):
    """A certificate or key in the folder that cannot be used, and why."""


@dataclass(frozen=True, slots=True)
class BrokerCertificates:
    """The files of one broker's TLS, and what `ensure_broker_certificates` did."""

    folder: Path
    #: "created", "renewed (<why>)", "kept", or "not ours (kept)"
    outcome: str = "kept"

    @property
    def ca_file(self) -> Path:
        return self.folder / CA_CERT

    @property
    def ca_key(self) -> Path:
        return self.folder / CA_KEY

    @property
    def cert_file(self) -> Path:
        return self.folder / SERVER_CERT

    @property
    def key_file(self) -> Path:
        return self.folder / SERVER_KEY


def default_names() -> list[str]:
    """The names a device on this machine or its network may connect with: loopback
    (by address and as ``localhost``) and the machine's own host names."""
    names = ["localhost", "127.0.0.1", "::1"]
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name not in names:
            names.append(name)
    return names


def ensure_broker_certificates(
    folder: Path, names: Sequence[str], *, now: datetime | None = None
) -> BrokerCertificates:
    """A CA and a server certificate for ``names`` in ``folder``: made if missing, kept
    if good, the server's made again if it is not (see the module docstring)."""
    now = now or datetime.now(UTC)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    certs = BrokerCertificates(folder)
    no_ca = not certs.ca_file.exists() and not certs.ca_key.exists()
    if no_ca and certs.cert_file.exists() and certs.key_file.exists():
        # a certificate and key with no CA of ours beside them: their owner's (say a
        # Let's Encrypt one, copied in by a renewal hook)
        return BrokerCertificates(folder, "not ours (kept)")
    ca = _usable_ca(certs, now)
    if ca is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _make_ca(ca_key, now)
        _write_key(certs.ca_key, ca_key)
        _write_cert(certs.ca_file, ca_cert)
        server_problem: str | None = "new CA"
        created = True
    else:
        ca_cert, ca_key = ca
        server_problem = _server_problem(certs, ca_cert, names, now)
        created = False
        if server_problem == _NOT_OURS:
            return BrokerCertificates(folder, "not ours (kept)")
    if server_problem is None:
        return certs
    server_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(certs.key_file, server_key)
    _write_cert(certs.cert_file, _make_server(server_key, ca_cert, ca_key, names, now))
    return BrokerCertificates(folder, "created" if created else f"renewed ({server_problem})")


def issue_client_certificate(
    certs: BrokerCertificates,
    common_name: str,
    cert_path: Path,
    key_path: Path,
    *,
    validity: timedelta = SERVER_VALIDITY,
    now: datetime | None = None,
) -> None:
    """A device's client certificate (CN = ``common_name``), signed by the broker's CA,
    for brokers that require one (``SMARTBY_MQTT_TLS_REQUIRE_CERTIFICATE``)."""
    now = now or datetime.now(UTC)
    ca = _load_ca(certs)
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(_authority_key_id(ca_key), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(cert_path, cert)


def certificate_names(path: Path) -> list[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return sorted(_san_names(cert))


# ------------------------------------------------------------------------ internals

_NOT_OURS = "not ours"


def _usable_ca(
    certs: BrokerCertificates, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The folder's CA, unless it is missing, broken or about to expire."""
    if not certs.ca_file.exists() and not certs.ca_key.exists():
        return None
    try:
        ca_cert, ca_key = _load_ca(certs)
    except CertificateError:
        return None
    if ca_cert.not_valid_after_utc - now < CA_RENEW_BEFORE:
        return None
    return ca_cert, ca_key


def _load_ca(certs: BrokerCertificates) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not certs.ca_file.exists():
        raise CertificateError(
            f"no broker CA in {certs.folder}: `smartby up` or `smartby broker certificates`"
            " makes one"
        )
    try:
        ca_cert = x509.load_pem_x509_certificate(certs.ca_file.read_bytes())
        ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CertificateError(f"the broker's CA in {certs.folder} is unusable: {exc}") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or _public_bytes(
        ca_key.public_key()
    ) != _public_bytes(ca_cert.public_key()):
        raise CertificateError(f"the broker's CA key in {certs.folder} does not match its CA")
    return ca_cert, ca_key


def _server_problem(
    certs: BrokerCertificates, ca_cert: x509.Certificate, names: Sequence[str], now: datetime
) -> str | None:
    """Why the server certificate must be made again (None: it is fine; `_NOT_OURS`: it
    is someone else's, to be left alone)."""
    try:
        cert = x509.load_pem_x509_certificate(certs.cert_file.read_bytes())
        key = serialization.load_pem_private_key(certs.key_file.read_bytes(), password=None)
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError):
        return "unreadable"
    if not _issued_by_key_of(cert, ca_cert):
        return _NOT_OURS
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return "not signed by the CA"
    if _public_bytes(key.public_key()) != _public_bytes(cert.public_key()):
        return "key does not match"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    missing = [name for name in _normalised(names) if name not in _san_names(cert)]
    if missing:
        return f"lacks {', '.join(missing)}"
    return None


def _issued_by_key_of(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Whether ``cert`` names ``ca_cert``'s key as its issuer's (RFC 5280 §4.2.1.1): the
    CA's name alone would not tell our CA from another host's smartby CA."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return False
    return aki.key_identifier == ski.digest


def _make_ca(key: ec.EllipticCurvePrivateKey, now: datetime) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smartby"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"smartby broker CA {socket.gethostname()}"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        # it signs server and device certificates, never another CA (RFC 5280 §4.2.1.9)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _make_server(
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
    now: datetime,
) -> x509.Certificate:
    wanted = _normalised(names)
    if not wanted:
        raise CertificateError("a server certificate needs at least one name")
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, wanted[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + SERVER_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_general_names(wanted)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_authority_key_id(ca_key), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _leaf_usage() -> x509.KeyUsage:
    # ECDHE key exchange: the key only signs (RFC 5280 §4.2.1.3)
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(ca_key: ec.EllipticCurvePrivateKey) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())


def _normalised(names: Iterable[str]) -> list[str]:
    """Names without duplicates, addresses in their canonical form, DNS names lower case."""
    seen: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        address = _address(name)
        name = str(address) if address is not None else name.lower()
        if name not in seen:
            seen.append(name)
    return seen


def _address(name: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    general: list[x509.GeneralName] = []
    for name in names:
        address = _address(name)
        general.append(x509.IPAddress(address) if address else x509.DNSName(name))
    return general


def _san_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    dns = {name.lower() for name in san.get_values_for_type(x509.DNSName)}
    return dns | {str(address) for address in san.get_values_for_type(x509.IPAddress)}


def _public_bytes(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _write_private(path, cert.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, content: bytes) -> None:
    """Atomically (the broker never reads half a file), 0600 whatever the umask: the
    certificates are not secret, but there is no reason for others to read them."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(content)
    tmp.replace(path)
