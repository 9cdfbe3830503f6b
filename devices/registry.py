"""The device registry: sites and devices in the database, and each device's secret.

A device's secret is random, shown once (when created or rotated) and stored only as
a hash.  The hash is Mosquitto's own PBKDF2-SHA512 format (``$7$``, what
``mosquitto_passwd`` writes), so the broker's password file is the registry's hashes
written out — no second copy of any credential, and nothing to convert.

The broker binds topic to credentials: a device logs in with its id as user name
and may publish only under ``<prefix>/<its id>/``; the ingest account may only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow, dict_row
from psycopg.types.json import Jsonb

from core.profiles import PROFILE_NAMES, Router

# The secrets and the single-device operations live in db (the API's admin routes
# use them too, and api/ may only share core and db); they are re-exported here so
# that the registry reads as one module.
from db.registry import (
    INGEST_USER,
    PBKDF2_ITERATIONS,
    PUBLIC_DEVICE_COLUMNS,
    DeviceRecord,
    RegistryError,
    _check_device_id,
    _taken_key,
    add_device,
    binding_columns,
    check_field_metrics,
    check_key_owner,
    disable_device,
    enable_device,
    hash_secret,
    new_secret,
    rotate_secret,
    verify_secret,
)

__all__ = [
    "INGEST_USER",
    "PBKDF2_ITERATIONS",
    "PUBLIC_DEVICE_COLUMNS",
    "REGISTRY_CHANNEL",
    "DeviceRecord",
    "RegistryError",
    "SiteRecord",
    "acl_text",
    "add_device",
    "disable_device",
    "enable_device",
    "hash_secret",
    "list_devices",
    "new_secret",
    "passwd_lines",
    "rotate_secret",
    "show_device",
    "upsert_device",
    "upsert_site",
    "verify_secret",
    "write_broker_files",
]

# ----------------------------------------------------------------------- registry ops


@dataclass(frozen=True, slots=True)
class SiteRecord:
    id: str
    name: str
    kind: str
    municipality: str
    lon: float
    lat: float
    properties: dict[str, Any]


def upsert_site(conn: psycopg.Connection[TupleRow], site: SiteRecord) -> bool:
    """Create or update a site; True when it was created."""
    row = conn.execute(
        """INSERT INTO sites (id, name, kind, municipality, lon, lat, properties)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
               municipality = EXCLUDED.municipality, lon = EXCLUDED.lon, lat = EXCLUDED.lat,
               properties = EXCLUDED.properties
           RETURNING (xmax = 0)""",
        (
            site.id,
            site.name,
            site.kind,
            site.municipality,
            site.lon,
            site.lat,
            Jsonb(site.properties),
        ),
    ).fetchone()
    return bool(row and row[0])


def upsert_device(conn: psycopg.Connection[TupleRow], device: DeviceRecord) -> str | None:
    """Create (returning its new secret) or update the descriptive fields of a device.

    An existing device keeps its secret and its status: re-importing a catalogue
    must neither lock out deployed sensors nor re-enable a disabled one.
    """
    _check_device_id(device.id)
    exists = conn.execute("SELECT 1 FROM devices WHERE id = %s", (device.id,)).fetchone()
    if exists is None:
        return add_device(conn, device)
    check_field_metrics(conn, device)
    check_key_owner(conn, device)
    try:
        with conn.transaction():
            conn.execute(
                """UPDATE devices SET site_id = %(site_id)s, kind = %(kind)s,
                       vendor = %(vendor)s, model = %(model)s, calibration = %(calibration)s,
                       profile = %(profile)s, external_id = %(external_id)s,
                       field_map = %(field_map)s, profile_options = %(profile_options)s,
                       updated_at = now()
                   WHERE id = %(id)s
                     AND (site_id, kind, vendor, model, calibration, profile, external_id,
                          field_map, profile_options)
                     IS DISTINCT FROM (%(site_id)s, %(kind)s, %(vendor)s, %(model)s,
                          %(calibration)s, %(profile)s, %(external_id)s, %(field_map)s,
                          %(profile_options)s)""",
                {
                    "id": device.id,
                    "site_id": device.site_id,
                    "kind": device.kind,
                    "vendor": device.vendor,
                    "model": device.model,
                    "calibration": Jsonb(device.calibration or {}),
                    **binding_columns(device),
                },
            )
    except psycopg.errors.UniqueViolation as exc:
        raise _taken_key(device, exc) from None
    return None


def _public_columns(table: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.Identifier(table, c) if table else sql.Identifier(c) for c in PUBLIC_DEVICE_COLUMNS
    )


def list_devices(conn: psycopg.Connection[TupleRow]) -> list[dict[str, Any]]:
    """Every device's public fields (never its secret hash)."""
    query = sql.SQL("SELECT {} FROM devices ORDER BY id").format(_public_columns())
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query).fetchall()


def show_device(conn: psycopg.Connection[TupleRow], device_id: str) -> dict[str, Any]:
    query = sql.SQL(
        """SELECT {}, d.profile, d.external_id AS topic, d.field_map AS fields,
                  d.profile_options AS options, s.name AS site_name, s.lon, s.lat,
                  (SELECT array_agg(metric ORDER BY metric) FROM series
                   WHERE device_id = d.id) AS metrics
           FROM devices d LEFT JOIN sites s ON s.id = d.site_id
           WHERE d.id = %s"""
    ).format(_public_columns("d"))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, (device_id,)).fetchone()
    if row is None:
        raise RegistryError(f"device {device_id!r} does not exist")
    return row


# --------------------------------------------------------------------- broker files


def passwd_lines(conn: psycopg.Connection[TupleRow], ingest_password_hash: str | None) -> list[str]:
    """Mosquitto password file lines: the ingest account and every active device."""
    lines = [f"{INGEST_USER}:{ingest_password_hash}"] if ingest_password_hash else []
    rows = conn.execute(
        "SELECT id, secret_hash FROM devices WHERE status = 'active'"
        " AND secret_hash IS NOT NULL ORDER BY id"
    ).fetchall()
    lines += [f"{device_id}:{hashed}" for device_id, hashed in rows]
    return lines


def acl_text(prefix: str) -> str:
    """The ACL: devices write only under their own id, the ingest account only reads.

    A ``pattern`` (``%u`` = user name) rather than a line per device, so the ACL does
    not change when devices come and go; the password file decides who gets in.
    Mosquitto checks a ``$share/<group>/`` subscription against the filter after it.
    The ingest account reads every device profile's topics (`core.profiles`).
    """
    reads = "".join(
        f"topic read {topic.filter}\n" for topic in Router(PROFILE_NAMES, prefix).filters()
    )
    return (
        "# generated by smartby: do not edit (smartby devices broker-files)\n"
        f"user {INGEST_USER}\n"
        f"{reads}"
        "\n"
        f"pattern write {prefix}/%u/telemetry\n"
        f"pattern write {prefix}/%u/status\n"
        # a Tasmota device whose Topic, or an ESPHome node whose name, is its device id
        # (docs/onboarding.md) publishes its own topics only
        "pattern write tele/%u/SENSOR\n"
        "pattern write tele/%u/LWT\n"
        "pattern write %u/sensor/+/state\n"
        "pattern write %u/status\n"
    )


def write_broker_files(
    conn: psycopg.Connection[TupleRow], folder: Path, prefix: str, ingest_password_hash: str | None
) -> tuple[Path, Path]:
    """Write ``passwd`` and ``acl`` atomically (the broker may reload at any moment)."""
    folder.mkdir(parents=True, exist_ok=True)
    passwd = folder / "passwd"
    acl = folder / "acl"
    _atomic_write(passwd, "\n".join(passwd_lines(conn, ingest_password_hash)) + "\n", 0o600)
    _atomic_write(acl, acl_text(prefix), 0o644)
    return passwd, acl


def _atomic_write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


#: the NOTIFY channel of migration 0004: a device was added, removed, disabled or re-keyed
REGISTRY_CHANNEL = "smartby_registry"
