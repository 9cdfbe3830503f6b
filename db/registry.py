"""Device registry operations every part of the platform may need: a device's
secret (random, shown once, stored only as a Mosquitto-format hash), and adding,
disabling, enabling and re-keying a device.

They live in db because both the ``smartby devices`` commands (``devices/``) and
the API's admin routes (``api/``) use them, and those packages may only share core
and db; ``devices.registry`` re-exports them with the rest of the registry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from core.errors import SmartbyError

#: the MQTT user name of the ingest workers; no device may take it
INGEST_USER = "smartby-ingest"
#: the broker account that publishes SensorThings Observations (api.sensorthings.mqtt)
STA_USER = "smartby-sta"
#: what mosquitto_passwd uses (mosquitto's src/password_mosq.h)
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12
#: columns anyone may see; secret_hash is never among them
PUBLIC_DEVICE_COLUMNS = (
    "id",
    "site_id",
    "kind",
    "vendor",
    "model",
    "status",
    "online",
    "battery",
    "rssi",
    "last_seen",
    "created_at",
    "updated_at",
)


class RegistryError(SmartbyError):
    """A registry operation that cannot be done; the message names the device or site."""


# ------------------------------------------------------------------------- secrets


def new_secret() -> str:
    """192 random bits, URL- and shell-safe."""
    return secrets.token_urlsafe(24)


def hash_secret(
    secret: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """Mosquitto's ``$7$<iterations>$<salt>$<hash>`` (PBKDF2-HMAC-SHA512, base64)."""
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_secret(secret: str, hashed: str) -> bool:
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = hashlib.pbkdf2_hmac(
            "sha512", secret.encode(), base64.b64decode(salt), int(iterations), 64
        )
        return hmac.compare_digest(expected, base64.b64decode(digest))
    except ValueError:
        return False


# ----------------------------------------------------------------------- registry ops


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    id: str
    site_id: str
    kind: str
    vendor: str | None = None
    model: str | None = None
    calibration: dict[str, Any] | None = None


def _check_device_id(device_id: str) -> None:
    if device_id == INGEST_USER:
        raise RegistryError(f"device id {INGEST_USER!r} is reserved for the ingest account")
    if device_id == STA_USER:
        raise RegistryError(f"device id {STA_USER!r} is reserved for the SensorThings publisher")


def add_device(conn: psycopg.Connection[TupleRow], device: DeviceRecord) -> str:
    """Register a new device; return its secret (the only time it is shown)."""
    _check_device_id(device.id)
    if conn.execute("SELECT 1 FROM sites WHERE id = %s", (device.site_id,)).fetchone() is None:
        raise RegistryError(f"site {device.site_id!r} does not exist; add or import it first")
    secret = new_secret()
    try:
        conn.execute(
            """INSERT INTO devices (id, site_id, kind, vendor, model, calibration, secret_hash)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (
                device.id,
                device.site_id,
                device.kind,
                device.vendor,
                device.model,
                Jsonb(device.calibration or {}),
                hash_secret(secret),
            ),
        )
    except psycopg.errors.UniqueViolation:
        raise RegistryError(f"device {device.id!r} already exists") from None
    except psycopg.errors.CheckViolation as exc:
        raise RegistryError(
            f"device {device.id!r} is not valid: {exc.diag.message_primary}"
        ) from None
    return secret


def _one_device(
    conn: psycopg.Connection[TupleRow],
    device_id: str,
    query: LiteralString,
    params: tuple[Any, ...],
) -> None:
    cur = conn.execute(query, params)
    if cur.rowcount == 0:
        raise RegistryError(f"device {device_id!r} does not exist")


def disable_device(conn: psycopg.Connection[TupleRow], device_id: str) -> None:
    """The device can no longer connect (it leaves the broker's password file) and
    anything that still arrives from it is quarantined."""
    _one_device(
        conn,
        device_id,
        "UPDATE devices SET status = 'disabled', updated_at = now() WHERE id = %s",
        (device_id,),
    )


def enable_device(conn: psycopg.Connection[TupleRow], device_id: str) -> None:
    _one_device(
        conn,
        device_id,
        "UPDATE devices SET status = 'active', updated_at = now() WHERE id = %s",
        (device_id,),
    )


def rotate_secret(conn: psycopg.Connection[TupleRow], device_id: str) -> str:
    """A new secret for the device; the old one stops working at the broker's reload."""
    secret = new_secret()
    _one_device(
        conn,
        device_id,
        "UPDATE devices SET secret_hash = %s, updated_at = now() WHERE id = %s",
        (hash_secret(secret), device_id),
    )
    return secret
