"""The device registry: sites and devices in the database, and each device's secret.

A device's secret is random, shown once (when created or rotated) and stored only as
a hash.  The hash is Mosquitto's own PBKDF2-SHA512 format (``$7$``, what
``mosquitto_passwd`` writes), the same material Mosquitto's dynamic security plugin
keeps, so a stopped broker's accounts are written straight from the registry
(`devices.broker_plan`) — no second copy of any credential, and nothing to convert.

The broker binds topic to credentials: a device logs in with its id as user name,
under its own client id, and may publish only its own topics; the ingest accounts
may only subscribe (`devices.broker_plan` builds the roles).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow, dict_row
from psycopg.types.json import Jsonb

# The secrets and the single-device operations live in db (the API's admin routes
# use them too, and api/ may only share core and db); they are re-exported here so
# that the registry reads as one module.
from db.registry import (
    PBKDF2_ITERATIONS,
    PUBLIC_DEVICE_COLUMNS,
    BrokerDevice,
    DeviceRecord,
    RegistryError,
    _check_device_id,
    _unique_violation,
    add_device,
    binding_columns,
    broker_devices,
    check_field_metrics,
    delete_device,
    disable_device,
    enable_device,
    hash_secret,
    new_secret,
    rotate_secret,
    set_client_id,
    verify_secret,
)

__all__ = [
    "PBKDF2_ITERATIONS",
    "PUBLIC_DEVICE_COLUMNS",
    "REGISTRY_CHANNEL",
    "BrokerDevice",
    "DeviceRecord",
    "RegistryError",
    "SiteRecord",
    "add_device",
    "broker_devices",
    "delete_device",
    "disable_device",
    "enable_device",
    "hash_secret",
    "list_devices",
    "new_secret",
    "rotate_secret",
    "set_client_id",
    "show_device",
    "upsert_device",
    "upsert_site",
    "verify_secret",
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
        raise _unique_violation(exc, device) from None
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
        """SELECT {}, coalesce(d.client_id, d.id) AS client_id, d.profile,
                  d.external_id AS topic, d.field_map AS fields, d.profile_options AS options,
                  s.name AS site_name, s.lon, s.lat,
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


#: the NOTIFY channel of migration 0004: a device was added, removed, disabled or re-keyed
REGISTRY_CHANNEL = "smartby_registry"
