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

Past the socket, paho spends most of a message's cost on objects an ingest worker
never uses: a `Properties` parse for every MQTT v5 PUBLISH, a `threading.Condition`
inside every incoming message's (publish-side) info object, a topic-filter match
for per-topic callbacks.  `FastClient._handle_publish` takes QoS 0/1 PUBLISH packets
that carry no properties the short way and hands anything else to paho;
`ack_many` queues a whole batch of PUBACKs as one write instead of one wake-up of
the network thread per message.

These override private paho methods, so paho is pinned in the lock file and the
ingest integration tests exercise every path.  Protocol, sessions and reconnects
stay paho's.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MessageState, MQTTErrorCode

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


_PUBACK = 0x40
_NO_INFO = mqtt.MQTTMessageInfo(0)


class FastClient(mqtt.Client):
    """`paho.mqtt.client.Client` with the lean receive path described above.

    Per-topic callbacks (``message_callback_add``) are not supported: every message
    goes to ``on_message``.
    """

    def _handle_publish(self) -> MQTTErrorCode:
        command: int = self._in_packet["command"]
        qos = (command & 0x06) >> 1
        if qos == 2 or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        topic_end = 2 + ((packet[0] << 8) | packet[1])
        pos = topic_end
        mid = 0
        if qos:
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        if pos >= len(packet) or packet[pos] != 0:
            # properties present (topic alias, user properties...): paho's full path
            return super()._handle_publish()
        message = mqtt.MQTTMessage.__new__(mqtt.MQTTMessage)
        message.timestamp = 0.0
        message.state = MessageState.MQTT_MS_INVALID
        message.info = _NO_INFO  # publish-side bookkeeping, unused for incoming messages
        message.dup = bool(command & 0x08)
        message.mid = mid
        message._topic = bytes(packet[2:topic_end])
        message.payload = bytes(memoryview(packet)[pos + 1 :])
        message.qos = qos
        message.retain = bool(command & 0x01)
        message.properties = None
        on_message = self._on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, message)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Iterable[int]) -> None:
        """PUBACK (MQTT v5 §3.4, reason 0 "success" implied by the 2-byte form) for
        every QoS 1 message id, written by the network thread in one go."""
        data = b"".join(struct.pack("!BBH", _PUBACK, 2, mid) for mid in mids)
        if data:
            self._packet_queue(_PUBACK, data, 0, 0)

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
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


def connect_or_wait(client: mqtt.Client, host: str, port: int, **connect: Any) -> None:
    """CONNECT now, or as soon as the broker is there: a broker that is down or
    restarting (under `smartby up` its restart may be seconds away, with a back-off;
    a network server may be away for longer) is waited for, not a reason to exit.
    Exiting would only have the worker restarted into the same refusal, counted as
    failures against the whole platform.  paho's loop retries the first connection
    too, with the client's reconnect delay (1 s doubling to 30 s).  Call before
    ``loop_start``."""
    try:
        client.connect(host, port, keepalive=30, **connect)
    except OSError as exc:
        logging.getLogger("ingest.worker").warning(
            "broker %s:%s not reachable (%s); retrying", host, port, exc
        )
        client.connect_async(host, port, keepalive=30, **connect)
