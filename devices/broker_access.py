"""Talking to Mosquitto's dynamic security plugin over ``$CONTROL/dynamic-security/v1``.

The plugin (``mosquitto_dynamic_security.so``, Mosquitto 2.0) keeps the broker's
accounts, roles and ACLs, and takes commands as MQTT messages from an account whose
role allows that topic.  A request is one JSON document of commands,
``{"commands": [{"command": "createClient", ..., "correlationData": "7"}, ...]}``,
and the plugin answers every command, in order, in one message on
``$CONTROL/dynamic-security/v1/response``
(``{"responses": [{"command": ..., "correlationData": ..., "error"?: ..., "data"?: ...}]}``);
the format is that of Mosquitto's plugins/dynamic-security/README.md, the same in
2.0.11 and 2.0.21.

`DynSecControl` is a small request/response client on paho: it subscribes to the
response topic before it sends anything (only an account allowed to read it gets
the answer), matches answers by correlation data, and turns every way of failing
(broker unreachable, login refused, plugin absent, no answer in time, an error
answer) into one clear `BrokerAccessError`.

`purge_session` removes a client id's persistent session: Mosquitto keeps an offline
session's subscriptions (a shared one too) until the session expires, even after
the account that made it is deleted, and only the CVE-2021-34434 re-check of an
*online* client removes a subscription its role no longer allows (FINDINGS of the
broker research, §4e).
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.broker import CONTROL_TOPIC, ClientTls
from core.errors import SmartbyError

RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
#: commands per request: each change makes the plugin rewrite its whole JSON file
#: (about 20 ms per change at 1000 clients, measured), so a request is kept short
#: enough to be answered well inside the timeout
BATCH = 100
#: what the plugin says when a create meets an existing entry, or a change a missing one
ALREADY_EXISTS = ("Client already exists", "Role already exists", "Group already exists")
NOT_FOUND = ("Client not found", "Role not found", "Group not found", "ACL not found")


class BrokerAccessError(SmartbyError):
    """The broker could not be reached or driven; the message says what to check."""


class BrokerUnreachable(BrokerAccessError):
    """Nothing answers at the broker's address (it is stopped, or not there)."""


class ControlError(BrokerAccessError):
    """The plugin answered a command with an error."""

    def __init__(self, command: str, error: str, detail: str = "") -> None:
        super().__init__(f"the broker refused {command}{detail}: {error}")
        self.command = command
        self.error = error


@dataclass(frozen=True, slots=True)
class BrokerAdmin:
    """Where the broker is, and the account that may drive its dynamic security."""

    host: str
    port: int
    username: str
    password: str
    #: TLS to the broker (None: plain MQTT)
    tls: ClientTls | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def _client(client_id: str, admin: BrokerAdmin, username: str, password: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    if admin.tls is not None:
        client.tls_set(admin.tls.ca_file, admin.tls.cert_file, admin.tls.key_file)
    return client


def _connect_failure(admin: BrokerAdmin, username: str, reason: ReasonCode | None) -> str:
    if reason is None:
        return f"no answer to CONNECT from the broker at {admin.where}"
    if reason.value in (0x86, 0x87):  # bad user name or password, not authorized
        return (
            f"the broker at {admin.where} refused the account {username!r} ({reason}):"
            " check SMARTBY_BROKER_ADMIN_USERNAME / SMARTBY_BROKER_ADMIN_PASSWORD"
        )
    return f"the broker at {admin.where} refused the account {username!r} ({reason})"


class DynSecControl:
    """A connection of the admin account to the dynamic security plugin.

    Use as a context manager::

        with DynSecControl(admin) as control:
            control.call("createRole", rolename="r", acls=[...])
    """

    def __init__(self, admin: BrokerAdmin, *, timeout: float = 30.0) -> None:
        self.admin = admin
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting: dict[str, threading.Event] = {}
        self._answers: dict[str, dict[str, Any]] = {}
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._connack: ReasonCode | None = None
        self._suback: list[ReasonCode] = []
        self._lost: ReasonCode | None = None
        # An id of its own per connection: several admins may work at once (the CLI
        # beside `smartby up`'s registry watcher), and one id would take over another.
        self.client = _client(
            f"smartby-admin-{uuid.uuid4().hex[:12]}", admin, admin.username, admin.password
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    # -- paho's network thread ------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _props: object,
    ) -> None:
        self._connack = reason
        self._connected.set()
        if not reason.is_failure:
            client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reasons: list[ReasonCode],
        _props: object,
    ) -> None:
        self._suback = list(reasons)
        self._subscribed.set()

    def _on_disconnect(self, *args: object) -> None:
        reason = args[3] if len(args) > 3 else None
        self._lost = reason if isinstance(reason, ReasonCode) else None
        with self._lock:
            for event in self._waiting.values():
                event.set()  # the waiter sees no answer and reports the lost connection

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            document = json.loads(msg.payload)
        except ValueError:
            return
        responses = document.get("responses") if isinstance(document, dict) else None
        for response in responses if isinstance(responses, list) else []:
            key = response.get("correlationData") if isinstance(response, dict) else None
            with self._lock:
                event = self._waiting.get(key) if isinstance(key, str) else None
                if event is not None and isinstance(key, str):
                    self._answers[key] = response
                    event.set()

    # -- connection -------------------------------------------------------------------

    def open(self) -> DynSecControl:
        admin = self.admin
        try:
            self.client.connect(admin.host, admin.port, keepalive=30)
        except OSError as exc:
            raise BrokerUnreachable(
                f"cannot reach the broker at {admin.where}: {exc.strerror or exc}"
            ) from None
        self.client.loop_start()
        try:
            if not self._connected.wait(self.timeout) or (
                self._connack is not None and self._connack.is_failure
            ):
                raise BrokerAccessError(_connect_failure(admin, admin.username, self._connack))
            if not self._subscribed.wait(self.timeout):
                raise BrokerAccessError(f"no SUBACK from the broker at {admin.where}")
            if any(reason.is_failure for reason in self._suback):
                raise BrokerAccessError(
                    f"the account {admin.username!r} may not read {RESPONSE_TOPIC} at"
                    f" {admin.where}: it is not the dynamic security plugin's admin"
                )
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> DynSecControl:
        return self.open()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------

    def run(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send the commands (in requests of `BATCH`) and return every answer, in order;
        an answer may carry an ``error`` (see `check` for raising on it)."""
        answers: list[dict[str, Any]] = []
        for start in range(0, len(commands), BATCH):
            answers += self._request(commands[start : start + BATCH])
        return answers

    def _request(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        keyed = [(f"c{next(self._ids)}", command) for command in commands]
        with self._lock:
            for key, _ in keyed:
                self._waiting[key] = threading.Event()
        try:
            payload = json.dumps(
                {"commands": [dict(command, correlationData=key) for key, command in keyed]}
            )
            info = self.client.publish(CONTROL_TOPIC, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerAccessError(
                    f"lost the connection to the broker at {self.admin.where}"
                    f" ({mqtt.error_string(info.rc)})"
                )
            answers = []
            for key, command in keyed:
                if not self._waiting[key].wait(self.timeout) or key not in self._answers:
                    if self._lost is not None or not self.client.is_connected():
                        raise BrokerAccessError(
                            f"the broker at {self.admin.where} closed the admin connection"
                            f" ({self._lost or 'connection lost'})"
                        )
                    raise BrokerAccessError(
                        f"no answer to {command['command']} from the broker at"
                        f" {self.admin.where} within {self.timeout:g} s: is the dynamic"
                        " security plugin loaded (plugin ... mosquitto_dynamic_security.so)?"
                    )
                answers.append(self._answers.pop(key))
            return answers
        finally:
            with self._lock:
                for key, _ in keyed:
                    self._waiting.pop(key, None)
                    self._answers.pop(key, None)

    def check(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Like `run`, raising `ControlError` for the first answer with an error."""
        answers = self.run(commands)
        for command, answer in zip(commands, answers, strict=True):
            raise_for(command, answer)
        return answers

    def call(self, command: str, **fields: Any) -> dict[str, Any]:
        """One command; its ``data`` (empty when it has none)."""
        answer = self.check([{"command": command, **fields}])[0]
        data = answer.get("data")
        return data if isinstance(data, dict) else {}


def raise_for(command: dict[str, Any], answer: dict[str, Any]) -> None:
    error = answer.get("error")
    if error:
        name = command.get("username") or command.get("rolename") or command.get("groupname")
        raise ControlError(str(command["command"]), str(error), f" ({name})" if name else "")


def purge_session(control: DynSecControl, client_id: str) -> None:
    """End whatever session the broker keeps for ``client_id``, online or not.

    The plugin cannot drop a session, so this does what a client would: a throw-away
    account bound to ``client_id`` connects with Clean Start and a Session Expiry
    Interval of 0 (MQTT v5 §3.1.2.4, §3.1.2.11.2), which discards the old session and
    takes over a connected one, then disconnects (its own session ends with it),
    and the account is deleted again.
    """
    admin = control.admin
    username = f"smartby-purge-{uuid.uuid4().hex[:12]}"
    password = secrets.token_urlsafe(24)
    control.call(
        "createClient",
        username=username,
        password=password,
        clientid=client_id,
        textdescription="temporary: ends a stale session",
    )
    try:
        client = _client(client_id, admin, username, password)
        answered = threading.Event()
        outcome: list[ReasonCode] = []

        def on_connect(*args: object) -> None:
            reason = args[3]
            if isinstance(reason, ReasonCode):
                outcome.append(reason)
            answered.set()

        client.on_connect = on_connect
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        try:
            client.connect(admin.host, admin.port, keepalive=10, clean_start=True, properties=props)
        except OSError as exc:
            raise BrokerAccessError(
                f"cannot reach the broker at {admin.where}: {exc.strerror or exc}"
            ) from None
        client.loop_start()
        try:
            if not answered.wait(control.timeout) or not outcome or outcome[0].is_failure:
                raise BrokerAccessError(
                    f"could not end the session of client id {client_id!r} at {admin.where}:"
                    f" {_connect_failure(admin, username, outcome[0] if outcome else None)}"
                )
        finally:
            client.disconnect()
            client.loop_stop()
    finally:
        control.run([{"command": "deleteClient", "username": username}])
