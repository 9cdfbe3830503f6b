"""Making a running broker's accounts agree with the registry, over ``$CONTROL``.

`reconcile` reads the plugin's clients, roles and default access, compares them with
a `devices.broker_plan.BrokerPlan`, and sends what differs: missing roles and
accounts are created (an account always with ``createClient`` and then
``addClientRole``: ``createClient`` with inline roles links the role one way only, and
a later ``deleteRole`` leaves the client pointing at freed memory, in 2.0.11 and
2.0.21 alike), client ids, roles, ACLs and the disabled flag are set, and accounts
smartby manages that the plan no longer has are deleted.  Accounts it does not
manage (a city's own) are left alone, and so is the admin account it works with.

Passwords: the plugin shows no hashes and takes only plaintext, so a reconciliation
can set a password only where it knows the secret: a device's at the moment it is
created or re-keyed (`push_devices`, right after the registry commit), the ingest
accounts' from the settings.  A managed account that never got its password is
reported with the fix (``smartby devices rotate-secret <id>``).  The embedded stack
and compose avoid the case: they write the plugin's file from the registry's
hashes while the broker is stopped (`devices.broker_plan.write_dynsec_file`).

Sessions: a device whose rights shrink (another client id, a role or ACL taken away)
or which is deleted has its session ended (`devices.broker_access.purge_session`):
an offline session keeps subscriptions made under the old rights, a shared one
included, and keeps taking its share of every device's telemetry until it expires.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from db.registry import broker_devices, broker_lock
from devices.broker_access import (
    ALREADY_EXISTS,
    NOT_FOUND,
    BrokerAdmin,
    ControlError,
    DynSecControl,
    purge_session,
    raise_for,
)
from devices.broker_plan import (
    MANAGED,
    NO_PASSWORD,
    ROLE_PREFIX,
    Account,
    Acl,
    BrokerPlan,
    PlatformAccounts,
    Role,
    devices_plan,
    write_dynsec_file,
)

log = logging.getLogger(__name__)

#: attempts of a reconciliation that met a concurrent change (another admin created or
#: deleted an entry between our reading and our writing)
ATTEMPTS = 3


@dataclass
class SyncReport:
    """What a reconciliation changed, and what it could not fix."""

    changes: list[str] = field(default_factory=list)
    #: managed accounts the broker has no password for (user name -> kind)
    without_password: dict[str, str] = field(default_factory=dict)
    #: client ids whose sessions were ended
    purged: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """One line per account that cannot log in, with what fixes it."""
        lines = []
        for username, kind in sorted(self.without_password.items()):
            if kind == "device":
                lines.append(
                    f"device {username!r} has no password at the broker (its secret was"
                    f" never sent there): run `smartby devices rotate-secret {username}`"
                )
            else:
                lines.append(
                    f"account {username!r} ({kind}) has no password at the broker: set its"
                    " password in the settings and run `smartby broker sync` again"
                )
        return lines

    def summary(self) -> str:
        parts = [f"{len(self.changes)} change(s)"]
        if self.purged:
            parts.append(f"{len(self.purged)} session(s) ended")
        if self.without_password:
            parts.append(f"{len(self.without_password)} account(s) without password")
        return ", ".join(parts)


class _Conflict(Exception):
    """Another admin changed the broker between our reading and our writing."""


@dataclass
class BrokerState:
    clients: dict[str, dict[str, Any]]
    roles: dict[str, set[Acl]]
    default_acl: dict[str, bool]


def read_state(control: DynSecControl) -> BrokerState:
    clients = control.call("listClients", verbose=True, count=-1, offset=0).get("clients", [])
    roles = control.call("listRoles", verbose=True, count=-1, offset=0).get("roles", [])
    default = control.call("getDefaultACLAccess").get("acls", [])
    return BrokerState(
        clients={c["username"]: c for c in clients},
        roles={
            r["rolename"]: {
                Acl(a["acltype"], a["topic"], bool(a.get("allow", True)), int(a.get("priority", 0)))
                for a in r.get("acls", [])
            }
            for r in roles
        },
        default_acl={a["acltype"]: bool(a["allow"]) for a in default},
    )


def _managed(client: Mapping[str, Any]) -> bool:
    return str(client.get("textdescription", "")).startswith(MANAGED)


class _Reconciler:
    def __init__(
        self,
        control: DynSecControl,
        plan: BrokerPlan,
        only: Collection[str] | None,
        known_secrets: Mapping[str, str],
        new_secrets: Mapping[str, str],
    ) -> None:
        self.control = control
        self.plan = plan
        self.only = None if only is None else set(only)
        self.known = known_secrets
        self.new = new_secrets
        self.report = SyncReport()
        self.to_purge: list[str] = []

    def send(self, commands: list[dict[str, Any]]) -> None:
        if not commands:
            return
        for command, answer in zip(commands, self.control.run(commands), strict=True):
            error = str(answer.get("error") or "")
            # addClientRole answers "Internal error" when the client has the role
            # already (plugins/dynamic-security/rolelist.c): another admin was quicker
            raced = command["command"] == "addClientRole" and error == "Internal error"
            if error in ALREADY_EXISTS or error in NOT_FOUND or raced:
                raise _Conflict(f"{command['command']}: {error}")
            raise_for(command, answer)

    def in_scope(self, username: str) -> bool:
        return self.only is None or username in self.only

    def run(self) -> SyncReport:
        state = read_state(self.control)
        self.defaults(state)
        self.roles(state)
        self.accounts(state)
        self.stale(state)
        for client_id in dict.fromkeys(self.to_purge):
            purge_session(self.control, client_id)
            self.report.purged.append(client_id)
        return self.report

    def defaults(self, state: BrokerState) -> None:
        if self.only is not None:
            return
        wrong = {k: v for k, v in self.plan.default_acl.items() if state.default_acl.get(k) != v}
        if wrong:
            self.send(
                [
                    {
                        "command": "setDefaultACLAccess",
                        "acls": [{"acltype": k, "allow": v} for k, v in wrong.items()],
                    }
                ]
            )
            self.report.changes.append(f"default access set: {wrong}")

    def roles(self, state: BrokerState) -> None:
        commands: list[dict[str, Any]] = []
        for role in self.plan.roles.values():
            have = state.roles.get(role.name)
            if have is None:
                commands.append({"command": "createRole", "rolename": role.name})
                self.report.changes.append(f"role {role.name} created")
                have = set()
            have_by = {(a.acltype, a.topic): a for a in have}
            want_by = {(a.acltype, a.topic): a for a in role.acls}
            # an ACL whose allow or priority differs is removed and added again: the
            # plugin refuses a second ACL of the same type and topic
            drop = sorted(k for k, a in have_by.items() if want_by.get(k) != a)
            add = sorted(a for k, a in want_by.items() if have_by.get(k) != a)
            for acltype, topic in drop:
                commands.append(
                    {
                        "command": "removeRoleACL",
                        "rolename": role.name,
                        "acltype": acltype,
                        "topic": topic,
                    }
                )
            for acl in add:
                commands.append({"command": "addRoleACL", "rolename": role.name, **acl.as_json()})
            if drop:
                self.report.changes.append(f"role {role.name}: {len(drop)} ACL(s) removed")
                self._tightened_role(role, state)
            if add and role.name in state.roles:
                self.report.changes.append(f"role {role.name}: {len(add)} ACL(s) added")
        self.send(commands)

    def _tightened_role(self, role: Role, state: BrokerState) -> None:
        """A device role lost rights: its devices' sessions may hold what it allowed."""
        for username, client in state.clients.items():
            account = self.plan.accounts.get(username)
            holds = any(r.get("rolename") == role.name for r in client.get("roles", []))
            client_id = client.get("clientid") or (account.client_id if account else None)
            if holds and account is not None and account.kind == "device" and client_id:
                self.to_purge.append(str(client_id))

    def accounts(self, state: BrokerState) -> None:
        create: list[dict[str, Any]] = []
        then: list[dict[str, Any]] = []
        for account in self.plan.accounts.values():
            if account.username == self.control.admin.username:
                continue  # our own login: a city's admin account is theirs to shape
            client = state.clients.get(account.username)
            if client is None:
                create.append(self._create(account))
                then += self._attach(account)
            else:
                then += self._update(account, client)
        self.send(create)
        self.send(then)

    def _create(self, account: Account) -> dict[str, Any]:
        secret = self.new.get(account.username) or self.known.get(account.username)
        command: dict[str, Any] = {
            "command": "createClient",
            "username": account.username,
            "textname": f"smartby {account.kind}",
            "textdescription": MANAGED if secret else NO_PASSWORD,
        }
        if account.client_id is not None:
            command["clientid"] = account.client_id
        if secret:
            command["password"] = secret
        else:
            self.report.without_password[account.username] = account.kind
        self.report.changes.append(f"account {account.username} created")
        return command

    def _attach(self, account: Account) -> list[dict[str, Any]]:
        commands: list[dict[str, Any]] = [
            {"command": "addClientRole", "username": account.username, "rolename": role}
            for role in account.roles
        ]
        if account.disabled:
            commands.append({"command": "disableClient", "username": account.username})
        return commands

    def _update(self, account: Account, client: Mapping[str, Any]) -> list[dict[str, Any]]:
        name = account.username
        commands: list[dict[str, Any]] = []
        tightened = False
        old_id = client.get("clientid")
        if old_id != account.client_id:
            rebind: dict[str, Any] = {"command": "setClientId", "username": name}
            if account.client_id is not None:
                rebind["clientid"] = account.client_id
            commands.append(rebind)
            self.report.changes.append(f"account {name}: client id {old_id} -> {account.client_id}")
            if old_id:
                self.to_purge.append(str(old_id))
            tightened = True
        roles = {str(r.get("rolename")) for r in client.get("roles", [])}
        for role in sorted(roles - set(account.roles)):
            commands.append({"command": "removeClientRole", "username": name, "rolename": role})
            tightened = True
        for role in account.roles:
            if role not in roles:
                commands.append({"command": "addClientRole", "username": name, "rolename": role})
        for group in client.get("groups", []):
            commands.append(
                {
                    "command": "removeGroupClient",
                    "groupname": group.get("groupname"),
                    "username": name,
                }
            )
            tightened = True
        if roles != set(account.roles) or client.get("groups"):
            self.report.changes.append(f"account {name}: roles set to {list(account.roles)}")
        disabled = bool(client.get("disabled", False))
        if disabled != account.disabled:
            command = "disableClient" if account.disabled else "enableClient"
            commands.append({"command": command, "username": name})
            self.report.changes.append(f"account {name} {command[:-6]}d")
        description = client.get("textdescription")
        managed = _managed(client)
        secret = self.new.get(name)
        if secret is None and (description == NO_PASSWORD or not managed):
            secret = self.known.get(name)
        if secret is not None:
            commands.append({"command": "setClientPassword", "username": name, "password": secret})
            self.report.changes.append(f"account {name}: password set")
        # an account of the same name made by hand is taken over: the registry decides
        wanted = MANAGED if secret is not None or not managed else description
        if description != wanted:
            commands.append(
                {"command": "modifyClient", "username": name, "textdescription": wanted}
            )
        if wanted == NO_PASSWORD:
            self.report.without_password[name] = account.kind
        if tightened and account.kind == "device" and account.client_id is not None:
            self.to_purge.append(account.client_id)
        return commands

    def stale(self, state: BrokerState) -> None:
        """Managed accounts the plan no longer has (in scope), then roles no longer used."""
        commands: list[dict[str, Any]] = []
        for username, client in state.clients.items():
            if username in self.plan.accounts or username == self.control.admin.username:
                continue
            if not self.in_scope(username) or not _managed(client):
                continue
            commands.append({"command": "deleteClient", "username": username})
            self.report.changes.append(f"account {username} deleted")
            if client.get("clientid"):
                self.to_purge.append(str(client["clientid"]))
        self.send(commands)
        commands = []
        scoped_roles = (
            None
            if self.only is None
            else {f"{ROLE_PREFIX}device-{username}" for username in self.only}
        )
        for name in state.roles:
            if name in self.plan.roles or not name.startswith(ROLE_PREFIX):
                continue
            if scoped_roles is not None and name not in scoped_roles:
                continue
            commands.append({"command": "deleteRole", "rolename": name})
            self.report.changes.append(f"role {name} deleted")
        self.send(commands)


def reconcile(
    control: DynSecControl,
    plan: BrokerPlan,
    *,
    only: Collection[str] | None = None,
    known_secrets: Mapping[str, str] | None = None,
    new_secrets: Mapping[str, str] | None = None,
) -> SyncReport:
    """Bring the broker in line with ``plan``.

    ``only``: the user names this call is about (an account of theirs missing from the
    plan is deleted); None: the whole broker, default access and stale roles included.
    ``known_secrets``: passwords to give accounts that are created or lack one.
    ``new_secrets``: passwords to set whatever the broker has (a secret just created
    or rotated; setting a password disconnects the account's client).
    """
    last: _Conflict | None = None
    for _ in range(ATTEMPTS):
        try:
            return _Reconciler(control, plan, only, known_secrets or {}, new_secrets or {}).run()
        except _Conflict as exc:
            log.info("broker changed meanwhile (%s); reconciling again", exc)
            last = exc
            time.sleep(random.uniform(0.05, 0.3))  # noqa: S311 - out of another's step
    raise ControlError("the reconciliation", f"the broker kept changing under it ({last})")


# ------------------------------------------------------------------ the entry points


def push_devices(
    admin: BrokerAdmin,
    conn: psycopg.Connection[TupleRow],
    prefix: str,
    device_ids: Collection[str],
    new_secrets: Mapping[str, str] | None = None,
) -> SyncReport:
    """After a registry change committed: bring these devices' accounts in line (a
    deleted device's account goes, with its session), with their new secrets."""
    with broker_lock(conn):
        plan = devices_plan(broker_devices(conn, list(device_ids)), prefix)
        with DynSecControl(admin) as control:
            return reconcile(control, plan, only=device_ids, new_secrets=new_secrets)


def sync_platform(
    admin: BrokerAdmin, conn: psycopg.Connection[TupleRow], accounts: PlatformAccounts
) -> SyncReport:
    """The whole broker in line with the registry and the platform's accounts."""
    with broker_lock(conn):
        plan = accounts.plan(broker_devices(conn))
        with DynSecControl(admin) as control:
            return reconcile(control, plan, known_secrets=accounts.secrets())


def write_platform_file(
    path: Path, conn: psycopg.Connection[TupleRow], accounts: PlatformAccounts
) -> list[str]:
    """The plugin's file for a stopped broker, every password from the registry's (or
    the settings') hashes; returns the accounts that could get none."""
    return write_dynsec_file(path, accounts.plan(broker_devices(conn), hashed=True))
