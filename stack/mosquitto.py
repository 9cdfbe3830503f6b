"""The embedded Mosquitto: a private broker on loopback for ``smartby up``, the tests
and the benchmarks, with its own config and persistence folder."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
from collections.abc import Sequence
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


class MosquittoBroker:
    """A private Mosquitto on loopback with its own config and persistence folder.

    The broker settings follow the ingest contract: QoS 1 messages for an offline
    persistent session are queued (up to a large bound, so a worker restart loses
    nothing), and the per-client inflight window is large enough for a whole ingest
    batch, because the worker acknowledges only after the batch commits.
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
        password_file: Path | None = None,
        acl_file: Path | None = None,
    ) -> None:
        self.root = root
        self.port = port
        # With a password file the broker refuses anonymous clients, and the ACL binds
        # each device to its own topics (the registry writes both files).
        self.password_file = password_file
        self.acl_file = acl_file
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
            f"listener {self.port} 127.0.0.1",
            *(
                [
                    "allow_anonymous false",
                    f"password_file {self.password_file}",
                    *([f"acl_file {self.acl_file}"] if self.acl_file else []),
                ]
                if self.password_file
                else ["allow_anonymous true"]
            ),
            "persistence true",
            f"persistence_location {self.root}/",
            "autosave_interval 60",
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
        self.write_config()
        self.proc = spawn([str(self.binary), "-c", str(self.config_path)], log_path=self.log_path)
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
        # passwords required it refuses this anonymous probe (return code 5, §3.2.2.3).
        return len(ack) == 4 and ack[0] == 0x20 and ack[1] == 2

    def reload(self) -> None:
        """SIGHUP: Mosquitto rereads password and ACL files without dropping clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=20)
            self.proc = None
