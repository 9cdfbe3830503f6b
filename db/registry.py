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
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from core.errors import SmartbyError
from core.profiles import Binding
from core.profiles.binding import field_map_json

#: the MQTT user name of the ingest workers; no device may take it
INGEST_USER = "smartby-ingest"
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
    #: how the device talks: its profile, key, field map and options (`core.profiles`),
    #: checked already (`core.profiles.check_binding`)
    binding: Binding = field(default_factory=Binding)


def binding_columns(device: DeviceRecord) -> dict[str, Any]:
    """The device's profile columns (migration 0008), as query parameters."""
    binding = device.binding
    return {
        "profile": binding.profile,
        "external_id": binding.key,
        "field_map": Jsonb(field_map_json(binding.fields)),
        "profile_options": Jsonb(binding.options_json()),
    }


#: profiles whose devices log in to the platform's own broker, where the ACL binds a
#: topic level to the MQTT user name (= device id)
_BROKER_NAMED = ("tasmota", "esphome")


def check_key_owner(conn: psycopg.Connection[TupleRow], device: DeviceRecord) -> None:
    """No device's key may be another device's id, nor the other way round, for the
    profiles whose topics the broker binds to user names (``tele/%u/…``, ``%u/status``):
    otherwise the device of that id could publish readings in the other's name."""
    binding = device.binding
    if binding.profile in _BROKER_NAMED and binding.key != device.id:
        row = conn.execute("SELECT 1 FROM devices WHERE id = %s", (binding.key,)).fetchone()
        if row is not None:
            raise RegistryError(
                f"{binding.profile} topic {binding.key!r} is the MQTT user name of device "
                f"{binding.key!r}, which could then publish as {device.id!r}"
            )
    row = conn.execute(
        "SELECT id, profile FROM devices WHERE external_id = %s AND id <> %s AND profile = ANY(%s)",
        (device.id, device.id, list(_BROKER_NAMED)),
    ).fetchone()
    if row is not None:
        raise RegistryError(
            f"device id {device.id!r} is the {row[1]} topic of device {row[0]!r}; as an MQTT "
            "user name it could publish in that device's name"
        )


def check_field_metrics(conn: psycopg.Connection[TupleRow], device: DeviceRecord) -> None:
    """Every metric the device's field map names exists in the catalogue."""
    wanted = sorted({t.metric for t in device.binding.fields.values() if t.metric is not None})
    if not wanted:
        return
    rows = conn.execute("SELECT key FROM metrics WHERE key = ANY(%s)", (wanted,)).fetchall()
    missing = sorted(set(wanted) - {row[0] for row in rows})
    if missing:
        raise RegistryError(
            f"device {device.id!r} maps fields to unknown metric(s) {', '.join(missing)} "
            "(smartby metrics list; smartby metrics add)"
        )


def _taken_key(device: DeviceRecord, exc: psycopg.errors.UniqueViolation) -> RegistryError:
    if exc.diag.constraint_name == "devices_external_idx":
        binding = device.binding
        return RegistryError(
            f"another {binding.profile} device already has the key {binding.key!r}"
        )
    return RegistryError(f"device {device.id!r} already exists")


def _check_device_id(device_id: str) -> None:
    if device_id == INGEST_USER:
        raise RegistryError(f"device id {INGEST_USER!r} is reserved for the ingest account")


def add_device(conn: psycopg.Connection[TupleRow], device: DeviceRecord) -> str:
    """Register a new device; return its secret (the only time it is shown)."""
    _check_device_id(device.id)
    if conn.execute("SELECT 1 FROM sites WHERE id = %s", (device.site_id,)).fetchone() is None:
        raise RegistryError(f"site {device.site_id!r} does not exist; add or import it first")
    check_field_metrics(conn, device)
    check_key_owner(conn, device)
    secret = new_secret()
    try:
        conn.execute(
            """INSERT INTO devices (id, site_id, kind, vendor, model, calibration, secret_hash,
                                   profile, external_id, field_map, profile_options)
               VALUES (%(id)s, %(site_id)s, %(kind)s, %(vendor)s, %(model)s, %(calibration)s,
                       %(secret_hash)s, %(profile)s, %(external_id)s, %(field_map)s,
                       %(profile_options)s)""",
            {
                "id": device.id,
                "site_id": device.site_id,
                "kind": device.kind,
                "vendor": device.vendor,
                "model": device.model,
                "calibration": Jsonb(device.calibration or {}),
                "secret_hash": hash_secret(secret),
                **binding_columns(device),
            },
        )
    except psycopg.errors.UniqueViolation as exc:
        raise _taken_key(device, exc) from None
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
