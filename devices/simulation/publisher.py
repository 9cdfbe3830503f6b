"""The MQTT side of the simulator: simulated devices publishing through a real broker,
one connection per device with its own credentials, either live (real time, optionally
faster to catch up) or as a backfill as fast as the broker acknowledges."""

from __future__ import annotations

import logging
import select
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from core.broker import ClientTls
from devices.catalogue import DeviceSpec
from devices.simulation.model import SimulationError, check_simulatable
from devices.simulation.payloads import (
    count_messages,
    simulated_messages,
    status_topic,
    telemetry_topic,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


@dataclass
class PublishReport:
    """What a backfill or live run published."""

    messages: int = 0
    per_device: dict[str, int] = field(default_factory=dict)
    start: float = 0.0  # the simulated time span covered
    end: float = 0.0
    elapsed_s: float = 0.0
    stopped: bool = False  # ended early by `Simulator.stop`


@dataclass
class _Tally:
    """Counters over all devices' connections. Everything runs on the simulator's one
    thread (paho driven by our own ``select`` loop), so they need no locks."""

    sent: int = 0  # telemetry messages published
    statuses: int = 0  # status messages published (each also gets a PUBACK)
    acked: int = 0  # PUBACKs received, telemetry and status alike

    @property
    def outstanding(self) -> int:
        return self.sent + self.statuses - self.acked

    @property
    def telemetry_acked(self) -> int:
        return self.acked - self.statuses


class _Link:
    """One device's MQTT connection."""

    def __init__(self, spec: DeviceSpec, client: mqtt.Client, status: str, tally: _Tally) -> None:
        self.spec = spec
        self.client = client
        self.status_topic = status
        self.tally = tally
        self.connected = False
        self.refused: str | None = None
        self.retry_at = 0.0  # when to try to reconnect after losing the connection
        self.backoff = 1.0

    def on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            return
        self.connected = True
        self.backoff = 1.0
        # Retained, so whoever subscribes later still learns the device is up.
        self.tally.statuses += 1
        client.publish(self.status_topic, b"online", qos=1, retain=True)

    def on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        was_connected, self.connected = self.connected, False
        if was_connected and reason.is_failure:
            log.warning("device %s lost its broker connection: %s", self.spec.id, reason)

    def on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        _reason: ReasonCode,
        _properties: object,
    ) -> None:
        self.tally.acked += 1


class Simulator:
    """Simulated devices publishing through a real broker, one MQTT connection per device.

    ``credentials`` maps a device id to its secret (the MQTT user name is the device id,
    so the broker's ACL holds each device to its own topics); leave it empty for an
    anonymous broker. Each device's connection has a retained ``online`` status and a
    retained ``offline`` last will on ``<prefix>/<id>/status``.

    Use as a context manager, or call `connect` and `close`. All methods belong to one
    thread, which drives every connection with one ``select`` loop (no paho threads: half
    the cost per message, and no thread per device), except `stop`, which may be called
    from a signal handler: it only sets a flag, which a running `backfill` or `run`
    notices within a fifth of a second.
    """

    def __init__(
        self,
        devices: Sequence[DeviceSpec],
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = "smartby",
        credentials: Mapping[str, str] | None = None,
        seed: int = 0,
        tls: ClientTls | None = None,
        window: int = 1000,
        connect_timeout: float = 15.0,
    ) -> None:
        if not devices:
            raise SimulationError("no devices to simulate")
        for spec in devices:
            check_simulatable(spec)
        credentials = dict(credentials or {})
        if credentials:
            missing = [spec.id for spec in devices if spec.id not in credentials]
            if missing:
                raise SimulationError(
                    f"no secret for device(s) {', '.join(missing)}: give every device its "
                    "secret, or none for an anonymous broker"
                )
        if window < 1:
            raise SimulationError(f"window must be at least 1, not {window}")
        self.devices = tuple(devices)
        self.host = host
        self.port = port
        self.prefix = prefix
        self.seed = seed
        self.window = window
        self.connect_timeout = connect_timeout
        self._credentials = credentials
        self._tls = tls
        self._links: dict[str, _Link] = {}
        self._tally = _Tally()
        self._topics = {telemetry_topic(prefix, spec.id): spec.id for spec in self.devices}
        self._stop_requested = False
        self._published_until: float | None = None
        self._misc_at = 0.0

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Simulator:
        self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Ask a running backfill or live run to end (safe in a signal handler)."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def connect(self) -> None:
        """Connect every device and wait until the broker has accepted them all."""
        if self._links:
            return
        try:
            for spec in self.devices:
                self._links[spec.id] = self._open(spec)
            deadline = _time.monotonic() + self.connect_timeout
            while not all(link.connected for link in self._links.values()):
                refused = next((link for link in self._links.values() if link.refused), None)
                if refused is not None:
                    raise SimulationError(
                        f"device {refused.spec.id!r}: the broker at {self.host}:{self.port} "
                        f"refused the connection ({refused.refused})"
                    )
                if _time.monotonic() > deadline:
                    waiting = [link.spec.id for link in self._links.values() if not link.connected]
                    raise SimulationError(
                        f"no CONNACK from the broker at {self.host}:{self.port} within "
                        f"{self.connect_timeout:.0f} s for device(s) {', '.join(waiting[:5])}"
                    )
                if self._stop_requested:
                    return
                self._service(0.05, reconnect=False)
        except BaseException:
            self._drop_links()
            raise

    def _open(self, spec: DeviceSpec) -> _Link:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            # The device id, as a real device of the catalogue would: the broker binds
            # each device's account to its client id (the registry's default is the
            # device id), so a second simulator of the same device takes this one over.
            client_id=spec.id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        link = _Link(spec, client, status_topic(self.prefix, spec.id), self._tally)
        client.on_connect = link.on_connect
        client.on_disconnect = link.on_disconnect
        client.on_publish = link.on_publish
        # The window is ours, across devices; paho's own cap of 20 per client would only
        # hold messages back inside paho.
        client.max_inflight_messages_set(0)
        client.will_set(link.status_topic, b"offline", qos=1, retain=True)
        if self._credentials:
            client.username_pw_set(spec.id, self._credentials[spec.id])
        if self._tls is not None:
            client.tls_set(self._tls.ca_file, self._tls.cert_file, self._tls.key_file)
        try:
            client.connect(self.host, self.port, keepalive=60)
        except OSError as exc:
            raise SimulationError(
                f"device {spec.id!r}: cannot reach the broker at {self.host}:{self.port}: {exc}"
            ) from None
        return link

    def close(self) -> None:
        """Say ``offline`` (retained) for every device, wait briefly for the broker to
        take it, and disconnect. A clean disconnect suppresses the last will, so the
        status is published here."""
        for link in self._links.values():
            if link.connected:
                self._tally.statuses += 1
                link.client.publish(link.status_topic, b"offline", qos=1, retain=True)
        self._drain(5.0)
        self._drop_links()

    def _drop_links(self) -> None:
        for link in self._links.values():
            link.client.disconnect()
        self._service(0.0, reconnect=False)
        self._links.clear()

    # -- the network loop --------------------------------------------------------------

    def _service(self, timeout: float, *, reconnect: bool = True) -> None:
        """One turn of the network loop: wait up to ``timeout`` for any connection to be
        readable (PUBACKs, CONNACKs) or writable (what paho could not send at once), then
        let paho handle it; keepalive pings; reconnect lost connections with backoff."""
        sockets: dict[Any, _Link] = {}
        writers = []
        for link in self._links.values():
            sock = link.client.socket()
            if sock is None:
                continue
            sockets[sock] = link
            if link.client.want_write():
                writers.append(sock)
        if sockets:
            # Over TLS a record may already be decrypted into the socket's own buffer,
            # where select cannot see it (paho's own loop asks pending() for that).
            buffered = [sock for sock in sockets if _pending(sock)]
            try:
                readable, writable, _ = select.select(
                    list(sockets), writers, [], 0.0 if buffered else timeout
                )
            except (OSError, ValueError):  # a socket closed under us: next turn sees it
                readable, writable = [], []
            readable = [*readable, *(sock for sock in buffered if sock not in readable)]
            for sock in readable:
                sockets[sock].client.loop_read()
            for sock in writable:
                link = sockets[sock]
                if link.client.socket() is not None:
                    link.client.loop_write()
        elif timeout > 0:
            _time.sleep(timeout)
        now = _time.monotonic()
        if now >= self._misc_at:
            self._misc_at = now + 1.0
            for link in self._links.values():
                link.client.loop_misc()
                if reconnect and link.client.socket() is None and now >= link.retry_at:
                    self._reconnect(link, now)

    def _reconnect(self, link: _Link, now: float) -> None:
        """Try once to get a lost connection back; QoS 1 messages paho still holds are
        sent again after the new CONNACK."""
        link.retry_at = now + link.backoff
        link.backoff = min(link.backoff * 2, 30.0)
        try:
            link.client.reconnect()
        except OSError as exc:
            log.warning(
                "device %s: broker %s:%s unreachable (%s); retrying in %.0f s",
                link.spec.id,
                self.host,
                self.port,
                exc,
                link.backoff,
            )

    def _publish(self, topic: str, payload: bytes, device_id: str) -> bool:
        """Publish one telemetry message once the window has room; False if stopped first.

        While a device is disconnected, paho keeps its QoS 1 messages and sends them after
        reconnecting, so nothing is lost, and the window bounds how much piles up.
        """
        while self._tally.outstanding >= self.window:
            if self._stop_requested:
                return False
            self._service(0.2)
        self._tally.sent += 1
        self._links[device_id].client.publish(topic, payload, qos=1)
        return True

    def _drain(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged everything published; True if it did."""
        deadline = _time.monotonic() + timeout
        while self._tally.outstanding > 0:
            remaining = deadline - _time.monotonic()
            if remaining <= 0:
                return False
            self._service(min(0.2, remaining))
        return True

    # -- modes -------------------------------------------------------------------------

    def backfill(
        self,
        duration_s: float,
        end: float | None = None,
        progress: ProgressCallback | None = None,
        *,
        drain_timeout: float = 120.0,
    ) -> PublishReport:
        """Publish the history of [end - duration_s, end) as fast as the broker takes it.

        Messages go out in time order across devices, with at most ``window`` awaiting
        their PUBACK: a sliding window, because paho rescans its outgoing queue on every
        PUBACK and its 16-bit packet ids run out past 65535 in flight. Per-device timing
        is kept in the payloads, not in the publishing. ``progress(done, total)`` is
        called on this thread, about ten times a second. ``end`` defaults to now; a later
        `run` continues from it.
        """
        self.connect()
        end = float(_time.time() if end is None else end)
        start = end - float(duration_s)
        total = count_messages(self.devices, start, end, self.seed)
        report = PublishReport(start=start, end=end)
        began = _time.monotonic()
        acked_before = self._tally.telemetry_acked
        next_progress = 0.0

        def done() -> int:
            return max(0, min(report.messages, self._tally.telemetry_acked - acked_before))

        if progress is not None:
            progress(0, total)
        for number, (_sent, topic, payload) in enumerate(
            simulated_messages(self.devices, start, end, self.seed, self.prefix)
        ):
            device_id = self._topics[topic]
            if not self._publish(topic, payload, device_id):
                report.stopped = True
                break
            report.messages += 1
            report.per_device[device_id] = report.per_device.get(device_id, 0) + 1
            if number % 200 == 0:
                # PUBACKs are read here too, not only when the window is full, so that
                # the broker's answers never pile up in the socket.
                self._service(0.0)
                now = _time.monotonic()
                if progress is not None and now >= next_progress:
                    next_progress = now + 0.1
                    progress(done(), total)
            if self._stop_requested:
                report.stopped = True
                break
        if not self._drain(drain_timeout):
            raise SimulationError(
                f"the broker at {self.host}:{self.port} did not acknowledge "
                f"{self._tally.outstanding} message(s) within {drain_timeout:.0f} s"
            )
        if progress is not None:
            progress(done(), report.messages if report.stopped else total)
        report.elapsed_s = _time.monotonic() - began
        if not report.stopped:
            self._published_until = end
        return report

    def run(
        self,
        speed: float = 1.0,
        start: float | None = None,
        until: float | None = None,
        *,
        allow_future: bool = False,
        chunk_s: float = 600.0,
    ) -> PublishReport:
        """Publish in (simulated) real time until `stop` is called or ``until`` is reached.

        Without ``start`` the simulated clock is the wall clock, and the run continues
        where a backfill on this simulator ended: what fell due in between goes out at
        once, so the history has no gap. With ``start`` (in the past) the simulated clock
        starts there and runs ``speed`` times as fast as the wall clock, until it catches
        up with it. It never runs ahead of the wall clock unless ``allow_future`` is set,
        because ingest quarantines readings from the future.
        """
        if speed <= 0:
            raise SimulationError(f"speed must be positive, not {speed}")
        self.connect()
        wall_start = _time.monotonic()
        if start is None:
            clock_start = self._published_until or _time.time()
            origin = _time.time()
        else:
            clock_start = origin = float(start)
        report = PublishReport(start=clock_start, end=clock_start)

        def clock() -> float:
            scaled = origin + (_time.monotonic() - wall_start) * speed
            return scaled if allow_future else min(scaled, _time.time())

        cursor = clock_start
        while not self._stop_requested and (until is None or cursor < until):
            horizon = cursor + chunk_s if until is None else min(cursor + chunk_s, until)
            for sent, topic, payload in simulated_messages(
                self.devices, cursor, horizon, self.seed, self.prefix, chunk_s=chunk_s
            ):
                if not self._wait_for_clock(clock, sent, speed):
                    break
                device_id = self._topics[topic]
                if not self._publish(topic, payload, device_id):
                    break
                report.messages += 1
                report.per_device[device_id] = report.per_device.get(device_id, 0) + 1
                report.end = sent
            if self._stop_requested:
                break
            if not self._wait_for_clock(clock, horizon, speed):
                break
            cursor = horizon
            report.end = cursor
            self._published_until = cursor
        report.stopped = self._stop_requested
        self._drain(10.0)
        report.elapsed_s = _time.monotonic() - wall_start
        return report

    def _wait_for_clock(self, clock: Callable[[], float], when: float, speed: float) -> bool:
        """Serve the network until the simulated clock reaches ``when``; False if stopped.

        Waits in turns of at most 0.2 s, so that `stop` (a plain flag) is seen promptly.
        """
        while True:
            if self._stop_requested:
                return False
            ahead = when - clock()
            if ahead <= 0:
                return True
            self._service(min(0.2, max(ahead / speed, 0.001)))


def _pending(sock: Any) -> bool:
    """Whether a TLS socket holds decrypted bytes not read yet (a plain one never does)."""
    pending = getattr(sock, "pending", None)
    return bool(pending()) if pending is not None else False
