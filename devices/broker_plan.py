"""Who may do what on the broker: the accounts and roles the registry asks for.

A `BrokerPlan` is the broker's access as it should be, built from the device
registry and the settings, with no I/O.  It is applied two ways:

- `write_dynsec_file` writes it as Mosquitto's ``dynamic-security.json`` while the
  broker is stopped (``smartby up`` before every broker start; compose's
  ``broker-config`` service before the first).  The file can carry the registry's
  ``$7$`` PBKDF2 hashes, so every password is right from the broker's first start;
  the control API cannot take a hash (it only takes plaintext).
- ``devices.broker_sync`` brings a running broker in line over ``$CONTROL``.

The access model (README, "Broker access"):

- default: nobody may publish, receive or subscribe; anybody may unsubscribe;
- a device publishes only its own topics (its profile's list,
  `core.profiles.Profile.device_topics`: ``smartby/<id>/telemetry`` and ``status``,
  ``tele/<topic>/SENSOR`` and ``LWT`` of a Tasmota, ``<node>/sensor/+/state`` and
  ``<node>/status`` of an ESPHome node; nothing for a LoRaWAN device, whose network
  server is an ingest source) and subscribes to nothing.  Mosquitto 2.0 substitutes neither
  ``%u`` nor ``%c`` in dynamic security ACLs, so every device has a role of its own;
- an ingest account subscribes to exactly the worker's filters, those of the enabled
  profiles (the literal ``$share/smartby-ingest/...`` in shared mode: the plugin
  checks the whole shared filter string), receives what they match, and publishes
  only the stations' warnings;
- the admin account only talks to the plugin;
- every account is bound to its client id: a bound account cannot log in under
  another id, so no credentials can take over the worker's session.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.broker import (
    ADMIN_USER,
    CONTROL_TOPICS,
    PUBLIC_BRIDGE_USER,
    STA_PUBLISHER_USER,
    STA_TOPICS,
    SubscriptionMode,
    ingest_filters,
    ingest_topics,
    public_topics,
    warnings_topics,
)
from core.profiles import PROFILE_NAMES, make_profile
from db.registry import BrokerDevice, hash_secret

#: Mosquitto's own default lets everyone receive; ours denies it too, so a session
#: that slipped into a subscription it may no longer make still receives nothing
DEFAULT_ACL_ACCESS: dict[str, bool] = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}
#: the mark of an account smartby manages (its ``textdescription``): a city's own
#: broker may hold other accounts, which are never touched
MANAGED = "managed by smartby"
#: ... and of one the broker has no password for: its plaintext was never known here
NO_PASSWORD = MANAGED + "; no password: rotate its secret"
ROLE_PREFIX = "smartby-"
INGEST_ROLE = "smartby-ingest"
ADMIN_ROLE = "smartby-admin"
STA_PUBLISHER_ROLE = "smartby-sta-publisher"
PUBLIC_BRIDGE_ROLE = "smartby-public-bridge"
#: the salt length Mosquitto's plugin accepts; a client with another one is dropped
#: silently when the file is loaded (plugins/dynamic-security/clients.c)
SALT_BYTES = 12
DIGEST_BYTES = 64


@dataclass(frozen=True, slots=True, order=True)
class Acl:
    """One ACL entry of a role (acltype: publishClientSend, publishClientReceive,
    subscribeLiteral, subscribePattern, unsubscribeLiteral, unsubscribePattern)."""

    acltype: str
    topic: str
    allow: bool = True
    priority: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "acltype": self.acltype,
            "topic": self.topic,
            "allow": self.allow,
            "priority": self.priority,
        }


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    acls: tuple[Acl, ...]

    def as_json(self) -> dict[str, Any]:
        return {"rolename": self.name, "acls": [acl.as_json() for acl in self.acls]}


@dataclass(frozen=True, slots=True)
class Account:
    """A broker account: a user name bound to one client id, with its roles."""

    username: str
    #: None only for the admin, which works under a fresh id per connection (several
    #: admins work at once; binding would add nothing: the admin can make any account)
    client_id: str | None
    roles: tuple[str, ...]
    #: device, ingest, admin, publisher, bridge
    kind: str
    disabled: bool = False
    #: Mosquitto's ``$7$`` hash, for the file; None: unknown (the account cannot log in)
    password_hash: str | None = None


@dataclass(frozen=True, slots=True)
class BrokerPlan:
    roles: dict[str, Role]
    accounts: dict[str, Account]
    default_acl: dict[str, bool] = field(default_factory=lambda: dict(DEFAULT_ACL_ACCESS))

    def only(self, usernames: Iterable[str]) -> BrokerPlan:
        """The part of the plan about these accounts (and their roles)."""
        accounts = {u: a for u in usernames if (a := self.accounts.get(u)) is not None}
        names = {role for account in accounts.values() for role in account.roles}
        return replace(
            self, roles={n: r for n, r in self.roles.items() if n in names}, accounts=accounts
        )


# ------------------------------------------------------------------------------ roles

DeviceTopics = Callable[[BrokerDevice], list[str]]


def topics_of_devices(prefix: str) -> DeviceTopics:
    """What each device may publish: the one place every plan takes it from (the
    embedded file, the reconciliation, the push after a registry change).  Its
    profile's list for its key (the device id for the ``smartby`` profile); nothing
    for a profile this code does not know (a registry newer than the code)."""
    profiles = {name: make_profile(name, prefix) for name in PROFILE_NAMES}

    def topics(device: BrokerDevice) -> list[str]:
        profile = profiles.get(device.profile)
        if profile is None:
            return []
        return list(profile.device_topics(device.key or device.id))

    return topics


def device_role_name(device_id: str) -> str:
    return f"{ROLE_PREFIX}device-{device_id}"


def device_role(device_id: str, topics: Iterable[str]) -> Role:
    """Publish only ``topics`` (a profile's list; each may be a filter), subscribe to
    nothing, receive nothing."""
    return Role(
        device_role_name(device_id),
        tuple(Acl("publishClientSend", topic) for topic in dict.fromkeys(topics)),
    )


def ingest_role(
    prefix: str, mode: SubscriptionMode, profiles: Sequence[str] = PROFILE_NAMES
) -> Role:
    """Subscribe to exactly the worker's filters (the enabled profiles'), receive what
    they match, and publish the stations' warnings (the worker's indicator thread
    issues them)."""
    return Role(
        INGEST_ROLE,
        (
            *(Acl("subscribeLiteral", f) for f in ingest_filters(prefix, mode, profiles)),
            *(Acl("publishClientReceive", t) for t in ingest_topics(prefix, profiles)),
            Acl("publishClientSend", warnings_topics(prefix)),
        ),
    )


def admin_role() -> Role:
    """Talk to the dynamic security plugin, and nothing else (``mosquitto_ctrl dynsec
    init`` also grants its admin the reading of ``#`` and ``$SYS/#``; ours has no use
    for them)."""
    return Role(
        ADMIN_ROLE,
        (
            Acl("publishClientSend", CONTROL_TOPICS),
            Acl("publishClientReceive", CONTROL_TOPICS),
            Acl("subscribePattern", CONTROL_TOPICS),
        ),
    )


def sta_publisher_role() -> Role:
    """Publish the SensorThings MQTT stream (``v1.1/...``), nothing else."""
    return Role(STA_PUBLISHER_ROLE, (Acl("publishClientSend", STA_TOPICS),))


def public_bridge_role(prefix: str) -> Role:
    """Read what the public broker offers (`core.broker.public_topics`), for its bridge
    (`stack.mosquitto`)."""
    return Role(
        PUBLIC_BRIDGE_ROLE,
        tuple(
            Acl(acltype, topic)
            for topic in public_topics(prefix)
            for acltype in ("subscribeLiteral", "publishClientReceive")
        ),
    )


# ------------------------------------------------------------------------------ plans


def ingest_client_ids(client_id: str | None, max_workers: int) -> list[str]:
    """The ingest workers' client ids (each its own account): the configured one, or
    ``smartby-ingest-1`` ... ``-<max workers>`` for workers that claim a slot."""
    if client_id:
        return [client_id]
    return [f"smartby-ingest-{slot}" for slot in range(1, max_workers + 1)]


def platform_plan(
    devices: Iterable[BrokerDevice],
    *,
    prefix: str,
    mode: SubscriptionMode,
    ingest_ids: Iterable[str],
    ingest_password_hash: str | None = None,
    admin_username: str = ADMIN_USER,
    admin_password_hash: str | None = None,
    sta_publisher_hash: str | None = None,
    public_bridge_hash: str | None = None,
    include_sta_publisher: bool = False,
    include_public_bridge: bool = False,
    topics_for: DeviceTopics | None = None,
    profiles: Sequence[str] = PROFILE_NAMES,
) -> BrokerPlan:
    """The whole broker: admin, ingest accounts, the devices of the registry, and the
    SensorThings publisher and public bridge when their passwords are given."""
    topics = topics_for or topics_of_devices(prefix)
    roles = [admin_role(), ingest_role(prefix, mode, profiles)]
    accounts = [
        Account(
            admin_username,
            None,
            (ADMIN_ROLE,),
            "admin",
            password_hash=admin_password_hash,
        ),
        *(
            Account(i, i, (INGEST_ROLE,), "ingest", password_hash=ingest_password_hash)
            for i in ingest_ids
        ),
    ]
    if include_sta_publisher or sta_publisher_hash is not None:
        roles.append(sta_publisher_role())
        accounts.append(
            Account(
                STA_PUBLISHER_USER,
                STA_PUBLISHER_USER,
                (STA_PUBLISHER_ROLE,),
                "publisher",
                password_hash=sta_publisher_hash,
            )
        )
    if include_public_bridge or public_bridge_hash is not None:
        roles.append(public_bridge_role(prefix))
        accounts.append(
            Account(
                PUBLIC_BRIDGE_USER,
                PUBLIC_BRIDGE_USER,
                (PUBLIC_BRIDGE_ROLE,),
                "bridge",
                password_hash=public_bridge_hash,
            )
        )
    plan = BrokerPlan({r.name: r for r in roles}, {a.username: a for a in accounts})
    return with_devices(plan, devices, topics)


def with_devices(
    plan: BrokerPlan, devices: Iterable[BrokerDevice], topics: DeviceTopics
) -> BrokerPlan:
    roles = dict(plan.roles)
    accounts = dict(plan.accounts)
    for device in devices:
        role = device_role(device.id, topics(device))
        roles[role.name] = role
        accounts[device.id] = Account(
            device.id,
            device.client_id,
            (role.name,),
            "device",
            disabled=not device.active,
            password_hash=device.secret_hash,
        )
    return replace(plan, roles=roles, accounts=accounts)


@dataclass(frozen=True, slots=True)
class PlatformAccounts:
    """The platform's own accounts on one broker, with their passwords in clear (the
    deployment holds them: settings in compose, files in the embedded stack's data
    folder)."""

    prefix: str
    mode: SubscriptionMode
    ingest_ids: tuple[str, ...]
    ingest_password: str | None
    admin_username: str = ADMIN_USER
    admin_password: str | None = None
    sta_publisher_password: str | None = None
    public_bridge_password: str | None = None
    #: the device profiles the workers subscribe to (``SMARTBY_INGEST_PROFILES``)
    profiles: tuple[str, ...] = PROFILE_NAMES

    def plan(self, devices: Iterable[BrokerDevice], *, hashed: bool = False) -> BrokerPlan:
        """The whole plan; with ``hashed`` the platform accounts carry fresh ``$7$``
        hashes of their passwords (for the file)."""

        def digest(secret: str | None) -> str | None:
            return hash_secret(secret) if hashed and secret is not None else None

        return platform_plan(
            devices,
            prefix=self.prefix,
            mode=self.mode,
            ingest_ids=self.ingest_ids,
            ingest_password_hash=digest(self.ingest_password),
            admin_username=self.admin_username,
            admin_password_hash=digest(self.admin_password),
            sta_publisher_hash=digest(self.sta_publisher_password),
            public_bridge_hash=digest(self.public_bridge_password),
            include_sta_publisher=self.sta_publisher_password is not None,
            include_public_bridge=self.public_bridge_password is not None,
            profiles=self.profiles,
        )

    def secrets(self) -> dict[str, str]:
        """User name -> password of the platform accounts whose password is known."""
        known = {i: self.ingest_password for i in self.ingest_ids if self.ingest_password}
        if self.sta_publisher_password:
            known[STA_PUBLISHER_USER] = self.sta_publisher_password
        if self.public_bridge_password:
            known[PUBLIC_BRIDGE_USER] = self.public_bridge_password
        return known


def devices_plan(devices: Iterable[BrokerDevice], prefix: str) -> BrokerPlan:
    """Only devices (what ``smartby devices ...`` changes): their accounts and roles."""
    return with_devices(BrokerPlan({}, {}), devices, topics_of_devices(prefix))


# ------------------------------------------------------------------------------ the file


def password_fields(hashed: str) -> dict[str, Any]:
    """``$7$<iterations>$<salt>$<digest>`` (``mosquitto_passwd``, `db.registry.hash_secret`)
    as the plugin's client fields: the same PBKDF2-HMAC-SHA512 material, split."""
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        salt_bytes = base64.b64decode(salt, validate=True)
        digest_bytes = base64.b64decode(digest, validate=True)
        rounds = int(iterations)
    except (ValueError, binascii.Error):
        raise ValueError("not a Mosquitto $7$ password hash") from None
    if kind != "7":
        raise ValueError(f"a ${kind}$ hash: only PBKDF2-SHA512 ($7$) maps onto the plugin")
    if len(salt_bytes) != SALT_BYTES or len(digest_bytes) != DIGEST_BYTES or rounds < 1:
        raise ValueError(
            f"salt of {len(salt_bytes)} bytes and digest of {len(digest_bytes)}: the plugin"
            f" drops a client unless they are {SALT_BYTES} and {DIGEST_BYTES}"
        )
    return {"password": digest, "salt": salt, "iterations": rounds}


def dynsec_document(plan: BrokerPlan) -> tuple[dict[str, Any], list[str]]:
    """The plugin's JSON document for ``plan``, and the accounts written without a
    password (no hash, or one the plugin cannot use): they cannot log in until a
    password is set over ``$CONTROL``."""
    clients = []
    without: list[str] = []
    for account in sorted(plan.accounts.values(), key=lambda a: a.username):
        entry: dict[str, Any] = {"username": account.username}
        if account.client_id is not None:
            entry["clientid"] = account.client_id
        entry["textname"] = f"smartby {account.kind}"
        try:
            if account.password_hash is None:
                raise ValueError("no hash")
            entry.update(password_fields(account.password_hash))
            entry["textdescription"] = MANAGED
        except ValueError:
            entry["textdescription"] = NO_PASSWORD
            without.append(account.username)
        if account.disabled:
            entry["disabled"] = True
        entry["roles"] = [{"rolename": role} for role in account.roles]
        entry["groups"] = []
        clients.append(entry)
    document = {
        "defaultACLAccess": dict(plan.default_acl),
        "clients": clients,
        "groups": [],
        "roles": [plan.roles[name].as_json() for name in sorted(plan.roles)],
    }
    return document, without


def write_dynsec_file(path: Path, plan: BrokerPlan) -> list[str]:
    """Write the plugin's file for ``plan`` (only while the broker is stopped: a running
    broker rewrites the file from memory at its next change, and never rereads it).
    Private (0600) and atomic.  Returns the accounts written without a password."""
    document, without = dynsec_document(plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)
    return without
