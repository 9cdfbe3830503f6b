"""The broker contract: which accounts exist, and which topics each may use.

Every part that meets the MQTT broker agrees on these names: the ingest worker
subscribes to `ingest_filters`, the device registry grants exactly those filters to
the ingest accounts and `device_topics` to each device, and the registry refuses a
device id or client id that would collide with a system account.  Pure data and
string building, no I/O; the broker itself is driven from ``devices.broker_access``.

The names of system accounts all start with ``smartby-`` (`SYSTEM_PREFIX`): a device
may not take such a user name or client id, so a device can never be bound to (and
so take over) the ingest worker's session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from core.profiles.registry import PROFILE_NAMES, Router

#: Subscription modes of the ingest worker (`core.settings.Settings.ingest_subscription`)
SubscriptionMode = Literal["plain", "shared"]

#: user names and client ids starting with this belong to the platform, never a device
SYSTEM_PREFIX = "smartby-"
#: the shared-subscription group every ingest worker joins in shared mode (MQTT v5 §4.8.2)
SHARE_GROUP = "smartby-ingest"
#: ingest workers' client ids (and user names): ``smartby-ingest-<slot>`` or ``-local``
INGEST_CLIENT_PREFIX = "smartby-ingest-"
#: the client id of the worker that ``smartby up`` runs
LOCAL_INGEST_CLIENT_ID = "smartby-ingest-local"
#: the account that drives the dynamic security plugin
ADMIN_USER = "smartby-admin"
#: the account that publishes the SensorThings MQTT stream (``v1.1/...``)
STA_PUBLISHER_USER = "smartby-sta-publisher"
#: the account of the public broker's bridge, which reads the stream for anonymous readers
PUBLIC_BRIDGE_USER = "smartby-public-bridge"
#: the SensorThings MQTT extension's topics (OGC 18-088 §14: ``v1.1/Datastreams(1)/...``)
STA_TOPICS = "v1.1/#"
#: the dynamic security plugin's control topic (Mosquitto's plugins/dynamic-security/README.md)
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
CONTROL_TOPICS = "$CONTROL/dynamic-security/#"


@dataclass(frozen=True, slots=True)
class ClientTls:
    """How an MQTT client speaks TLS to the broker: it verifies the broker's certificate
    and host name against ``ca_file`` (None: the system's trusted CAs), and shows its own
    certificate where the broker requires one.  Paths, as paho's ``tls_set`` takes them."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def telemetry_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/{device_id}/telemetry"


def status_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/{device_id}/status"


def device_topics(prefix: str, device_id: str) -> list[str]:
    """What a device of the ``smartby`` profile publishes: its telemetry and its status
    (the retained ``online`` and its last will ``offline``).  Other profiles (Tasmota,
    ESPHome, ...) bring their own list (`core.profiles.Profile.device_topics`); the
    broker grants a device exactly its list."""
    return [telemetry_topic(prefix, device_id), status_topic(prefix, device_id)]


def ingest_topics(prefix: str, profiles: Sequence[str] = PROFILE_NAMES) -> list[str]:
    """The topics whose messages an ingest worker may receive: those of the enabled
    device profiles (``SMARTBY_INGEST_PROFILES``), the smartby profile's telemetry and
    status first."""
    return [topic.filter for topic in Router(profiles, prefix).filters()]


def warnings_topics(prefix: str) -> str:
    """The retained CAP warnings of the stations (``ingest.warnings`` publishes one per
    site): published by the ingest accounts, read by anyone on the public broker."""
    return f"{prefix}/public/warnings/#"


def public_topics(prefix: str) -> tuple[str, ...]:
    """What anonymous readers may read, on the public broker only: the SensorThings
    stream and the warnings.  Exactly these trees, so no device id can ever name a
    topic that reaches them (``<prefix>/public/telemetry`` is not under them)."""
    return (STA_TOPICS, warnings_topics(prefix))


def ingest_filters(
    prefix: str, mode: SubscriptionMode, profiles: Sequence[str] = PROFILE_NAMES
) -> list[str]:
    """What a worker subscribes to, in the order of `ingest_topics`.

    ``plain``: one worker per broker and prefix holds an ordinary persistent
    subscription, which Mosquitto keeps across its restarts.  ``shared``: workers
    share ``$share/smartby-ingest/...``; Mosquitto 2.0 never writes a shared
    subscription to its persistence file, so after a broker restart messages are
    dropped until the workers have subscribed again (README, "Subscription modes").
    """
    topics = ingest_topics(prefix, profiles)
    if mode == "plain":
        return topics
    return [f"$share/{SHARE_GROUP}/{topic}" for topic in topics]


def is_system_name(name: str) -> bool:
    """A user name or client id reserved for the platform's own accounts."""
    return name.startswith(SYSTEM_PREFIX)


class DeviceAccountSync(Protocol):
    """Brings one device's broker account in line with the registry after a change
    committed, setting its password when the new secret is given.  Returns ``None``
    once the broker agrees, or one line saying why it could not be updated (the
    registry change stands either way).  The composition root supplies it to the
    API's admin routes, which may not import the broker code themselves."""

    def __call__(self, device_id: str, secret: str | None) -> str | None: ...
