"""Putting a catalogue into the registry, and keeping the local simulators' secrets.

`import_catalogue` is idempotent: sites and devices are created or updated, and a
device that already exists keeps its secret and its status (re-importing must not
lock out deployed sensors nor re-enable one that staff disabled).  New devices'
secrets are returned once, for the caller to hand over.

The simulated devices of `smartby up` need their secrets to log in like real ones,
so the local stack keeps them in a 0600 file in its own data folder; nothing else
ever stores a secret in clear.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

from core.errors import SmartbyError
from devices.catalogue import Catalogue
from devices.registry import (
    DeviceRecord,
    SiteRecord,
    rotate_secret,
    upsert_device,
    upsert_site,
)


@dataclass
class ImportResult:
    sites_created: int = 0
    sites_updated: int = 0
    #: device id -> secret, for the devices this import created (shown once)
    devices_created: dict[str, str] = field(default_factory=dict)
    devices_existing: int = 0
    #: existing devices whose profile or key changed: their broker roles must follow
    devices_rekeyed: list[str] = field(default_factory=list)
    #: metrics whose resolution the catalogue declared
    resolutions: int = 0


def import_catalogue(conn: psycopg.Connection[TupleRow], catalogue: Catalogue) -> ImportResult:
    """Create or update every site and device of the catalogue, in one transaction."""
    result = ImportResult()
    with conn.transaction():
        for key, resolution in catalogue.resolutions.items():
            updated = conn.execute(
                "UPDATE metrics SET resolution = %s WHERE key = %s", (resolution, key)
            ).rowcount
            if not updated:
                raise SmartbyError(
                    f"{catalogue.source}: metrics.{key}: no metric {key!r} in the metric "
                    "catalogue (add it first)"
                )
            result.resolutions += 1
        for site in catalogue.sites:
            created = upsert_site(
                conn,
                SiteRecord(
                    site.id,
                    site.name,
                    site.kind,
                    catalogue.municipality,
                    site.lon,
                    site.lat,
                    dict(site.properties),
                ),
            )
            if created:
                result.sites_created += 1
            else:
                result.sites_updated += 1
        for spec in catalogue.devices:
            before = conn.execute(
                "SELECT profile, external_id FROM devices WHERE id = %s", (spec.id,)
            ).fetchone()
            if before is not None and tuple(before) != (spec.binding.profile, spec.binding.key):
                result.devices_rekeyed.append(spec.id)
            calibration = dict(spec.calibration)
            secret = upsert_device(
                conn,
                DeviceRecord(
                    spec.id,
                    spec.site.id,
                    spec.kind,
                    spec.vendor,
                    spec.model,
                    calibration,
                    binding=spec.binding,
                ),
            )
            if secret is None:
                result.devices_existing += 1
            else:
                result.devices_created[spec.id] = secret
    return result


class CredentialStore:
    """The local stack's simulated devices' secrets: a JSON file readable only by us."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def save(self, secrets: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(secrets, indent=1, sort_keys=True) + "\n")
        tmp.chmod(0o600)
        tmp.replace(self.path)


def provision_simulated(
    conn: psycopg.Connection[TupleRow], catalogue: Catalogue, store: CredentialStore
) -> dict[str, str]:
    """Import the catalogue and make sure every device has a secret the local
    simulators know (a device whose secret was lost gets a new one)."""
    result = import_catalogue(conn, catalogue)
    secrets = store.load()
    secrets.update(result.devices_created)
    for spec in catalogue.devices:
        if spec.id not in secrets:
            secrets[spec.id] = rotate_secret(conn, spec.id)
    store.save(secrets)
    return {spec.id: secrets[spec.id] for spec in catalogue.devices}
