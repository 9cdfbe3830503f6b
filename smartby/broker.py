"""Which broker the commands drive, with which admin account, and the platform's own
accounts on it: the embedded stack's (secrets kept in its data folder) or a
configured broker's (compose, a city's own Mosquitto 2: the settings).

The device registry's changes reach the broker from here: every ``smartby devices``
command and the API's admin routes call `push_after_commit` once their change has
committed, and ``smartby broker sync`` (`sync`) reconciles the whole broker.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from core.broker import LOCAL_INGEST_CLIENT_ID, DeviceAccountSync
from core.settings import Settings
from db.connect import connect
from devices.broker_access import BrokerAccessError, BrokerAdmin
from devices.broker_plan import PlatformAccounts, ingest_client_ids
from devices.broker_sync import SyncReport, push_devices
from devices.registry import new_secret
from smartby.locate import database_url
from stack.running import read_running_stack

log = logging.getLogger(__name__)

#: the embedded stack's secrets of its own accounts, under <data_dir>/credentials
ADMIN_SECRET = "broker-admin.password"  # noqa: S105 - a file name
INGEST_SECRET = "ingest.password"  # noqa: S105 - a file name
#: the SensorThings MQTT publisher's password (its account may publish v1.1/# only)
STA_PUBLISHER_SECRET = "sta-publisher.password"  # noqa: S105 - a file name
BRIDGE_SECRET = "public-bridge.password"  # noqa: S105 - a file name


def local_secret(path: Path) -> str:
    """A secret kept (0600) in the data folder, made on first use: stable across runs."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    secret = new_secret()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(secret + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return secret


def embedded_accounts(settings: Settings, data_dir: Path) -> PlatformAccounts:
    """The embedded stack's accounts: its one worker (`LOCAL_INGEST_CLIENT_ID`), the
    SensorThings publisher, the public broker's bridge, and passwords kept in
    ``credentials/``."""
    credentials = data_dir / "credentials"
    return PlatformAccounts(
        prefix=settings.mqtt_topic_prefix,
        mode=settings.ingest_subscription,
        ingest_ids=(LOCAL_INGEST_CLIENT_ID,),
        ingest_password=local_secret(credentials / INGEST_SECRET),
        admin_password=local_secret(credentials / ADMIN_SECRET),
        sta_publisher_password=local_secret(credentials / STA_PUBLISHER_SECRET),
        public_bridge_password=local_secret(credentials / BRIDGE_SECRET),
        profiles=settings.ingest_profile_names,
    )


def configured_accounts(settings: Settings) -> PlatformAccounts:
    """A configured broker's accounts (compose, a city's Mosquitto): one ingest account
    per worker client id (``SMARTBY_INGEST_CLIENT_ID``, or ``smartby-ingest-1`` ...
    ``-<SMARTBY_INGEST_MAX_WORKERS>``), with ``SMARTBY_MQTT_PASSWORD``."""
    return PlatformAccounts(
        prefix=settings.mqtt_topic_prefix,
        mode=settings.ingest_subscription,
        ingest_ids=tuple(ingest_client_ids(settings.ingest_client_id, settings.ingest_max_workers)),
        ingest_password=_plain(settings.mqtt_password),
        admin_username=settings.broker_admin_username,
        admin_password=_plain(settings.broker_admin_password),
        sta_publisher_password=_plain(settings.sta_publisher_password),
        public_bridge_password=_plain(settings.public_bridge_password),
        profiles=settings.ingest_profile_names,
    )


def _plain(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def broker_admin(settings: Settings) -> BrokerAdmin | None:
    """The broker to drive and its admin: the configured one
    (``SMARTBY_BROKER_ADMIN_PASSWORD``), else a running ``smartby up``'s; None if
    neither."""
    password = settings.broker_admin_password
    if password is not None:
        return BrokerAdmin(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.broker_admin_username,
            password.get_secret_value(),
            settings.mqtt_client_tls,
        )
    stack = read_running_stack(settings.data_dir)
    secret = settings.data_dir / "credentials" / ADMIN_SECRET
    if stack is None or not secret.exists():
        return None
    return BrokerAdmin(
        stack.mqtt_host, stack.mqtt_port, settings.broker_admin_username, secret.read_text().strip()
    )


def sync_target(settings: Settings) -> tuple[BrokerAdmin, PlatformAccounts] | None:
    """The broker ``smartby broker sync`` reconciles, and the platform's accounts on it:
    a configured one (``SMARTBY_BROKER_ADMIN_PASSWORD``) with the settings' accounts,
    else a running ``smartby up``'s with its own (its worker's id, its secrets)."""
    admin = broker_admin(settings)
    if admin is None:
        return None
    if settings.broker_admin_password is not None:
        return admin, configured_accounts(settings)
    return admin, embedded_accounts(settings, settings.data_dir)


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """What became of a registry change at the broker."""

    #: one line when the broker could not be updated (None: it agrees now)
    problem: str | None
    report: SyncReport | None = None


NO_BROKER = (
    "no broker to update (no SMARTBY_BROKER_ADMIN_PASSWORD and no running `smartby up`):"
    " the embedded broker takes the change at its next start; for another broker run"
    " `smartby broker sync` with its admin password"
)


def push_after_commit(
    settings: Settings,
    device_ids: Collection[str],
    new_secrets: Mapping[str, str] | None = None,
    *,
    url: str | None = None,
) -> PushOutcome:
    """Bring these devices' broker accounts in line with the registry (with their new
    secrets), right after the registry change committed."""
    admin = broker_admin(settings)
    if admin is None:
        return PushOutcome(NO_BROKER)
    try:
        with connect(url or database_url(settings), autocommit=True) as conn:
            report = push_devices(admin, conn, settings.mqtt_topic_prefix, device_ids, new_secrets)
    except BrokerAccessError as exc:
        return PushOutcome(f"the broker was not updated: {exc}")
    problems = report.problems()
    return PushOutcome(problems[0] if problems else None, report)


def account_sync(settings: Settings, url: str) -> DeviceAccountSync:
    """The API's admin routes' link to the broker (`core.broker.DeviceAccountSync`)."""

    def sync(device_id: str, secret: str | None) -> str | None:
        secrets = {device_id: secret} if secret is not None else None
        outcome = push_after_commit(settings, [device_id], secrets, url=url)
        if outcome.problem is not None:
            log.warning("device %s: %s", device_id, outcome.problem)
        return outcome.problem

    return sync
