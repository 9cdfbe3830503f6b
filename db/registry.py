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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from core.broker import SYSTEM_PREFIX, is_system_name
from core.errors import SmartbyError
from core.profiles import Binding
from core.profiles.binding import field_map_json

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
    #: the MQTT client id its firmware uses; None: the device id
    client_id: str | None = None
    #: how the device talks: its profile, key, field map and options (`core.profiles`),
    #: checked already (`core.profiles.check_binding`)
    binding: Binding = field(default_factory=Binding)


def binding_columns(device: DeviceRecord) -> dict[str, Any]:
    """The device's profile columns (migration 0013), as query parameters."""
    binding = device.binding
    return {
        "profile": binding.profile,
        "external_id": binding.key,
        "field_map": Jsonb(field_map_json(binding.fields)),
        "profile_options": Jsonb(binding.options_json()),
    }


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


def _check_device_id(device_id: str) -> None:
    if is_system_name(device_id):
        raise RegistryError(
            f"device id {device_id!r} is reserved: names starting with {SYSTEM_PREFIX!r}"
            " belong to the platform's own broker accounts"
        )


def _check_client_id(client_id: str | None) -> None:
    if client_id is not None and is_system_name(client_id):
        raise RegistryError(
            f"client id {client_id!r} is reserved: client ids starting with {SYSTEM_PREFIX!r}"
            " belong to the platform's own broker accounts (the ingest worker's session)"
        )


def _client_id_owner(conn: psycopg.Connection[TupleRow], client_id: str) -> str | None:
    row = conn.execute(
        "SELECT id FROM devices WHERE coalesce(client_id, id) = %s", (client_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def _unique_violation(exc: psycopg.errors.UniqueViolation, device: DeviceRecord) -> RegistryError:
    if exc.diag.constraint_name == "devices_client_id_key":
        client_id = device.client_id or device.id
        return RegistryError(
            f"client id {client_id!r} is already used by another device; each device needs"
            " its own (set one with --client-id)"
        )
    if exc.diag.constraint_name == "devices_external_idx":
        binding = device.binding
        return RegistryError(
            f"another {binding.profile} device already has the key {binding.key!r}"
        )
    return RegistryError(f"device {device.id!r} already exists")


def add_device(conn: psycopg.Connection[TupleRow], device: DeviceRecord) -> str:
    """Register a new device; return its secret (the only time it is shown)."""
    _check_device_id(device.id)
    _check_client_id(device.client_id)
    if conn.execute("SELECT 1 FROM sites WHERE id = %s", (device.site_id,)).fetchone() is None:
        raise RegistryError(f"site {device.site_id!r} does not exist; add or import it first")
    check_field_metrics(conn, device)
    secret = new_secret()
    try:
        with conn.transaction():
            conn.execute(
                """INSERT INTO devices (id, site_id, kind, vendor, model, calibration,
                                        secret_hash, client_id, profile, external_id,
                                        field_map, profile_options)
                   VALUES (%(id)s, %(site_id)s, %(kind)s, %(vendor)s, %(model)s,
                           %(calibration)s, %(secret_hash)s, %(client_id)s, %(profile)s,
                           %(external_id)s, %(field_map)s, %(profile_options)s)""",
                {
                    "id": device.id,
                    "site_id": device.site_id,
                    "kind": device.kind,
                    "vendor": device.vendor,
                    "model": device.model,
                    "calibration": Jsonb(device.calibration or {}),
                    "secret_hash": hash_secret(secret),
                    "client_id": device.client_id,
                    **binding_columns(device),
                },
            )
    except psycopg.errors.UniqueViolation as exc:
        raise _unique_violation(exc, device) from None
    except psycopg.errors.CheckViolation as exc:
        raise RegistryError(
            f"device {device.id!r} is not valid: {exc.diag.message_primary}"
        ) from None
    return secret


def set_client_id(
    conn: psycopg.Connection[TupleRow], device_id: str, client_id: str | None
) -> None:
    """Bind the device's broker account to another client id (None: its device id)."""
    _check_client_id(client_id)
    owner = _client_id_owner(conn, client_id or device_id)
    if owner is not None and owner != device_id:
        raise RegistryError(
            f"client id {client_id or device_id!r} is already used by device {owner!r}"
        )
    try:
        with conn.transaction():
            _one_device(
                conn,
                device_id,
                "UPDATE devices SET client_id = %s, updated_at = now() WHERE id = %s",
                (None if client_id == device_id else client_id, device_id),
            )
    except psycopg.errors.CheckViolation as exc:
        raise RegistryError(
            f"client id {client_id!r} is not valid: {exc.diag.message_primary}"
        ) from None


def delete_device(conn: psycopg.Connection[TupleRow], device_id: str) -> None:
    """Remove a device that has no stored data (its broker account goes with it);
    a device with readings is disabled instead, so its data keeps its sensor."""
    try:
        with conn.transaction():
            _one_device(conn, device_id, "DELETE FROM devices WHERE id = %s", (device_id,))
    except psycopg.errors.ForeignKeyViolation:
        raise RegistryError(
            f"device {device_id!r} has stored data and cannot be deleted; disable it instead"
        ) from None


#: advisory lock of whoever brings the broker in line with the registry
_BROKER_LOCK_KEY = 0x736D_6272_6F6B_6572  # "smbroker"


@contextmanager
def broker_lock(conn: psycopg.Connection[TupleRow]) -> Iterator[None]:
    """One reconciliation of the broker at a time, across processes (the CLI beside
    `smartby up`'s registry watcher, the API): two that interleave trip over each
    other's half-made changes and retry in lockstep."""
    conn.execute("SELECT pg_advisory_lock(%s)", (_BROKER_LOCK_KEY,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_BROKER_LOCK_KEY,))


@dataclass(frozen=True, slots=True)
class BrokerDevice:
    """What the broker needs to know of a device: its account and whether it may log in."""

    id: str
    client_id: str
    active: bool
    #: Mosquitto's ``$7$`` hash, or None for a device without a secret
    secret_hash: str | None
    #: how it talks (`core.profiles`), which says which topics it publishes
    profile: str = "smartby"
    #: its key in the profile's terms (the Tasmota topic, the ESPHome node); None: its id
    key: str | None = None


def broker_devices(
    conn: psycopg.Connection[TupleRow], device_ids: list[str] | None = None
) -> list[BrokerDevice]:
    """Every device's broker account (or those of ``device_ids`` that exist)."""
    query: LiteralString = (
        "SELECT id, coalesce(client_id, id), status = 'active', secret_hash, profile,"
        " external_id FROM devices"
    )
    if device_ids is None:
        rows = conn.execute(query + " ORDER BY id").fetchall()
    else:
        rows = conn.execute(query + " WHERE id = ANY(%s) ORDER BY id", (device_ids,)).fetchall()
    return [BrokerDevice(str(i), str(c), bool(a), h, str(p), k) for i, c, a, h, p, k in rows]


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
    """The device can no longer connect (its broker account is disabled) and anything
    that still arrives from it is quarantined."""
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
    """A new secret for the device; the old one stops working once the broker has the
    new one (`devices.broker_sync.push_device`)."""
    secret = new_secret()
    _one_device(
        conn,
        device_id,
        "UPDATE devices SET secret_hash = %s, updated_at = now() WHERE id = %s",
        (hash_secret(secret), device_id),
    )
    return secret
