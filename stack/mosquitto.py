"""The embedded Mosquitto: a private broker on loopback for ``smartby up``, the tests
and the benchmarks, with its own config and persistence folder.

Access is Mosquitto's dynamic security plugin (`DynamicSecurity`): the broker reads
its accounts and roles from a JSON file at start and rewrites it after every change
made over ``$CONTROL``.  Whoever starts the broker may write that file first
(``before_launch``), while the broker is stopped: ``smartby up`` writes it from the
device registry before every start.  Without the plugin the broker is anonymous,
which only the tests of other things and the benchmarks use.

Persistence: Mosquitto acknowledges a QoS 1 message before it writes anything to
disk, and saves its whole state every ``autosave_interval`` + 1 seconds (``src/loop.c``:
a save when ``last_backup + interval < now``).  ``autosave_interval 1`` bounds what a
``kill -9`` of the broker loses to about 2 s of traffic (README, "The one bounded
exception"); ``autosave_on_changes`` with a small count bounds it in messages
instead, but rewrites the whole file that often and was measured to stall the
broker under a backlog.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stack.process import MissingBinaryError, await_ready, spawn, stop_process

_INSTALL_MOSQUITTO = "run scripts/setup, or install it with `apt-get install mosquitto`"


def find_mosquitto(configured: Path | None = None) -> Path:
    """The configured, else the installed, Mosquitto broker binary (Debian puts it in
    /usr/sbin, off a normal user's PATH)."""
    if configured is not None:
        if configured.is_file() and os.access(configured, os.X_OK):
            return configured
        raise MissingBinaryError(
            f"Mosquitto broker not found at {configured}: {_INSTALL_MOSQUITTO}"
        )
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise MissingBinaryError(f"Mosquitto broker not found: {_INSTALL_MOSQUITTO}")
    return Path(found)


PLUGIN = "mosquitto_dynamic_security.so"


def find_dynsec_plugin(binary: Path, configured: Path | None = None) -> Path:
    """The dynamic security plugin that belongs to ``binary``: in the ``lib`` folder of
    its installation (``/opt/mosquitto-2.0.21/lib``; Debian: ``/usr/lib/<multiarch>``)."""
    if configured is not None:
        if configured.is_file():
            return configured
        raise MissingBinaryError(f"Mosquitto's dynamic security plugin not found at {configured}")
    prefix = binary.resolve().parent.parent
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    candidates = [
        prefix / "lib" / PLUGIN,
        prefix / "lib" / multiarch / PLUGIN,
        prefix / "lib" / "mosquitto" / PLUGIN,
        Path("/usr/lib") / multiarch / PLUGIN,
        Path("/usr/lib") / PLUGIN,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise MissingBinaryError(
        f"Mosquitto's dynamic security plugin ({PLUGIN}) not found beside {binary}:"
        " it ships with Debian's mosquitto package (2.0); or set SMARTBY_MOSQUITTO_DYNSEC_PLUGIN"
    )


@dataclass(frozen=True, slots=True)
class DynamicSecurity:
    """Mosquitto's dynamic security plugin and its file of accounts and roles."""

    plugin: Path
    config_file: Path
    #: anonymous clients in the plugin's anonymous group: never on the platform's
    #: broker, where they could take sessions over (see `public_stream_config`)
    allow_anonymous: bool = False

    def config_lines(self) -> list[str]:
        return [
            # the plugin decides who may log in and what each account may do
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"plugin {self.plugin}",
            f"plugin_opt_config_file {self.config_file}",
        ]


@dataclass(frozen=True, slots=True)
class TlsListener:
    """A TLS listener beside the plain one, for devices (``stack.certificates`` makes
    its files).  It shares the plain listener's access rules (``per_listener_settings
    false``): the same accounts and passwords, over TLS.  With ``require_certificate``
    a client must also show a certificate that ``ca_file`` signed (Mosquitto's
    ``require_certificate``); its password is still checked."""

    port: int
    cert_file: Path
    key_file: Path
    #: the address it binds ("0.0.0.0": every IPv4 interface)
    host: str = "127.0.0.1"
    ca_file: Path | None = None
    require_certificate: bool = False

    def config_lines(self) -> list[str]:
        # listener options follow their `listener` line (mosquitto.conf(5))
        lines = [
            f"listener {self.port} {self.host}".rstrip(),
            f"certfile {self.cert_file}",
            f"keyfile {self.key_file}",
        ]
        if self.require_certificate:
            if self.ca_file is None:
                raise ValueError("a TLS listener that requires certificates needs a CA file")
            lines += [f"cafile {self.ca_file}", "require_certificate true"]
        return lines


def public_stream_config(
    root: Path,
    *,
    main_port: int,
    bridge_user: str,
    bridge_password: str,
    topics: Sequence[str],
) -> list[str]:
    """Lines of a public broker for anonymous readers of a few topic trees (the
    SensorThings MQTT stream ``v1.1/#`` and the warnings, `core.broker.public_topics`),
    fed by a bridge from the platform's broker.

    Anonymous readers may not share a broker with the platform's sessions: Mosquitto
    binds a client id to an account only for that account, so an anonymous client
    could connect with the ingest worker's client id and take its session over (tested
    in tests/devices/test_public_stream.py).  This broker holds no session of value:
    anonymous clients may only read ``topics``; its only feed is a bridge, an outgoing
    connection no client here can take over (its local client id is random, written
    only into this private config), that reads ``topics`` on the platform's broker
    with an account allowed nothing else.  Nothing is persisted, and sessions of
    readers who left expire after an hour.
    """
    acl = root / "acl"
    root.mkdir(parents=True, exist_ok=True)
    acl.write_text(
        "# written by smartby: anonymous readers may read these and nothing else\n"
        + "".join(f"topic read {topic}\n" for topic in topics)
    )
    acl.chmod(0o600)
    return [
        f"acl_file {acl}",
        "persistent_client_expiration 1h",
        "max_connections 1000",
        *bridge_config("127.0.0.1", main_port, bridge_user, bridge_password, topics),
    ]


def bridge_config(
    host: str, port: int, user: str, password: str, topics: Sequence[str]
) -> list[str]:
    """The public broker's bridge: it reads ``topics`` from the platform's broker at
    ``host:port`` with the bridge account; its own client id is random.  MQTT 5, for
    its subscriptions keep the retain flag as published (a 3.1.1 bridge that is not
    in "private" mode loses it on every live message, so the public broker would keep
    no station's latest warning for readers who connect later)."""
    return [
        "connection smartby-stream",
        f"address {host}:{port}",
        "bridge_protocol_version mqttv50",
        f"remote_clientid {user}",
        f"local_clientid smartby-stream-{secrets.token_hex(12)}",
        f"remote_username {user}",
        f"remote_password {password}",
        *(f"topic {topic} in 1" for topic in topics),
        "cleansession true",
        "notifications false",
        "try_private false",
        "restart_timeout 1 10",
    ]


class MosquittoBroker:
    """A private Mosquitto on loopback with its own config and persistence folder.

    The broker settings follow the ingest contract: QoS 1 messages for an offline
    persistent session are queued (up to a large bound, so a worker restart loses
    nothing), and the per-client inflight window is large enough for a whole ingest
    batch, because the worker acknowledges only after the batch commits.

    ``dynsec``: the dynamic security plugin (None: anonymous, for tests of other
    things and benchmarks).  ``before_launch``: called before every start, while the
    broker is stopped (`smartby.up` writes the plugin's file there).
    ``tls``: a TLS listener beside the plain one (devices connect there).
    """

    def __init__(
        self,
        root: Path,
        *,
        port: int,
        max_inflight: int = 20_000,
        max_queued: int = 2_000_000,
        binary: Path | None = None,
        extra_config: Sequence[str] = (),
        dynsec: DynamicSecurity | None = None,
        before_launch: Callable[[], None] | None = None,
        persistence: bool = True,
        tls: TlsListener | None = None,
    ) -> None:
        self.root = root
        self.port = port
        self.dynsec = dynsec
        self.before_launch = before_launch
        self.persistence = persistence
        self.tls = tls
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.binary = binary or find_mosquitto()
        self.extra_config = list(extra_config)
        self.config_path = root / "mosquitto.conf"
        self.log_path = root / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        lines = [
            "# written by smartby; changes are overwritten at start",
            # one set of access rules for every listener (the plugin is global)
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            *(self.tls.config_lines() if self.tls else []),
            *(self.dynsec.config_lines() if self.dynsec else ["allow_anonymous true"]),
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.root}/",
            # a save every 2 s bounds a kill -9's loss (see the module docstring)
            "autosave_interval 1",
            "autosave_on_changes false",
            f"max_inflight_messages {self.max_inflight}",
            f"max_queued_messages {self.max_queued}",
            "max_queued_bytes 0",
            # as in deploy/mosquitto/mosquitto.conf: bigger packets are refused by the
            # broker; the worker quarantines payloads over its own (smaller) limit
            "max_packet_size 1048576",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages false",
            # Stay the user we start as: the folder is ours, and we never start as root
            # in production (compose runs the official image).
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            *self.extra_config,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")
        self.config_path.chmod(0o600)

    def start(self, timeout: float = 20.0) -> None:
        self.launch()
        assert self.proc is not None
        await_ready(
            self.proc,
            self.accepts_connections,
            timeout=timeout,
            what=f"Mosquitto on port {self.port}",
            log_path=self.log_path,
            on_failure=self.stop,
        )

    def launch(self) -> subprocess.Popen[bytes]:
        """Write the config and start the broker without waiting for it: a supervisor
        polls `accepts_connections` between its other duties."""
        if self.before_launch is not None:
            self.before_launch()
        self.write_config()
        # umask 077: what the broker writes (persistence, the plugin's file, which
        # 2.0.11 would otherwise leave world-readable) is its user's alone
        self.proc = spawn(
            [str(self.binary), "-c", str(self.config_path)], log_path=self.log_path, umask=0o077
        )
        return self.proc

    def accepts_connections(self) -> bool:
        """A real MQTT CONNECT/CONNACK exchange, not just an open TCP port."""
        # MQTT 3.1.1 CONNECT with clean session and a fixed client id (§3.1).
        client_id = b"smartby-probe"
        variable = b"\x00\x04MQTT\x04\x02\x00\x0a"
        payload = len(client_id).to_bytes(2, "big") + client_id
        packet = bytes([0x10, len(variable) + len(payload)]) + variable + payload
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(packet)
                ack = sock.recv(4)
                sock.sendall(b"\xe0\x00")  # DISCONNECT
        except OSError:
            return False
        # Any CONNACK (0x20, remaining length 2) means the broker is serving MQTT; with
        # the plugin it refuses this anonymous probe (return code 5, §3.2.2.3).
        return len(ack) == 4 and ack[0] == 0x20 and ack[1] == 2

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=20)
            self.proc = None
