"""paho-mqtt's client, with a read path fit for a subscriber under load.

paho reads each packet with at least three ``recv`` calls (command byte, remaining
length byte by byte, body), and a subscriber that publishes nothing gets one packet
per pass of its loop, each pass a ``select``.  At QoS 1 that caps a subscriber near
8k messages/s on this kind of machine, well below what the database can take.

`BufferedSocket` serves those small reads from a 256 KiB buffer filled by one
``recv``, and reports what it holds through ``pending()`` — the hook paho already
uses for TLS sockets' own buffers, so its loop never waits in ``select`` while a
buffered packet is unread.  `FastClient.loop_read` then handles every packet
already buffered in one pass (bounded, so acknowledgements still get written).
Everything else — protocol, sessions, reconnects — stays paho's.
"""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

_READ_SIZE = 256 * 1024
#: packets handled per loop pass before paho gets to write (PUBACKs) and ping
_PACKETS_PER_PASS = 2000


class BufferedSocket:
    """A socket whose small reads come from a buffer; everything else is delegated."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        available = len(self._buf) - self._pos
        if available == 0:
            data: bytes = self._sock.recv(max(size, _READ_SIZE))
            if len(data) <= size:  # also the b"" of a closed connection
                return data
            self._buf, self._pos, available = data, 0, len(data)
        end = self._pos + min(size, available)
        chunk = self._buf[self._pos : end]
        self._pos = end
        if end == len(self._buf):
            self._buf, self._pos = b"", 0
        return chunk

    def pending(self) -> int:
        """Bytes readable without touching the network (paho skips select for these)."""
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + int(inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class FastClient(mqtt.Client):
    """`paho.mqtt.client.Client` with the buffered read path described above."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()  # type: ignore[misc]
        return BufferedSocket(sock) if isinstance(sock, socket.socket) else sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        for _ in range(max(max_packets, _PACKETS_PER_PASS)):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
        return MQTTErrorCode.MQTT_ERR_SUCCESS
