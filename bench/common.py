"""A lean MQTT 3.1.1 QoS 1 publisher for load generation.

paho's publisher tops out near 7-10k QoS 1 messages/s per process here (it rescans
its outgoing queue on every PUBACK), which would make the benchmark measure the
load generator rather than ingest, on a machine whose two cores the broker, the
worker and PostgreSQL already share.  This one writes pre-encoded PUBLISH packets
(MQTT 3.1.1 §3.3) in large chunks and counts PUBACKs (§3.4) on a reader thread,
keeping at most ``window`` unacknowledged, so it costs little CPU per message.
Packet ids cycle through 1..65535; the window keeps any id from being reused while
still unacknowledged (§2.3.1).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str, keepalive: int = 60) -> bytes:
    cid = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02" + struct.pack("!H", keepalive)  # clean session
    payload = struct.pack("!H", len(cid)) + cid
    body = variable + payload
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """PUBLISH, QoS 1, no retain."""
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + struct.pack("!H", packet_id) + payload
    return b"\x32" + _remaining_length(len(body)) + body


class Publisher:
    """One connection publishing a stream at QoS 1."""

    def __init__(
        self, port: int, client_id: str, host: str = "127.0.0.1", window: int = 20_000
    ) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(client_id))
        connack = self._recv_exact(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"broker refused the connection: {connack!r}")
        self.window = window
        self.sent = 0
        self.acked = 0
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    def _read_acks(self) -> None:
        pending = b""
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            whole = len(pending) // 4  # every PUBACK is 4 bytes: 0x40 0x02 id id
            pending = pending[whole * 4 :]
            with self._cond:
                self.acked += whole
                self._cond.notify_all()

    def send(self, packets: Sequence[bytes], chunk: int = 500) -> None:
        """Send pre-encoded packets, never more than ``window`` unacknowledged."""
        for start in range(0, len(packets), chunk):
            part = packets[start : start + chunk]
            with self._cond:
                while self.sent + len(part) - self.acked > self.window:
                    self._cond.wait()
            self.sock.sendall(b"".join(part))
            self.sent += len(part)

    def wait_acked(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.acked < self.sent:
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"{self.sent - self.acked} PUBACKs missing")

    def close(self) -> None:
        self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


def encode_stream(messages: Iterable[tuple[str, bytes]]) -> list[bytes]:
    return [
        publish_packet(topic, payload, (i % 65535) + 1)
        for i, (topic, payload) in enumerate(messages)
    ]


def paced_publish(
    port: int,
    client_id: str,
    rate: float,
    count: int,
    make: Callable[[int, float], tuple[str, bytes]],
    chunk: int = 50,
) -> None:
    """Publish ``count`` messages at ``rate``/s, each made at its send time (so it can
    carry its own publish timestamp), in small chunks to keep the pace smooth."""
    publisher = Publisher(port, client_id)
    try:
        start = time.perf_counter()
        sent = 0
        while sent < count:
            due = start + sent / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            n = min(chunk, count - sent)
            now = time.time()
            packets = [
                publish_packet(*make(sent + i, now), ((sent + i) % 65535) + 1) for i in range(n)
            ]
            publisher.send(packets, chunk=n)
            sent += n
        publisher.wait_acked()
    finally:
        publisher.close()
