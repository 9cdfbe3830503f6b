"""The ingest worker: MQTT in, TimescaleDB out, acknowledged only after commit.

Threads and hand-over:
- paho's network thread only appends each message to a deque and wakes the writer
  (it never decodes or touches the database, so it keeps reading the socket);
- the writer (the thread that calls `run`) takes batches bounded in size and time,
  prepares them (`ingest.pipeline`), writes each in one transaction
  (`ingest.writer`), and only then acknowledges the batch's messages (MQTT v5
  manual ack).

Memory is bounded by the protocol, not by hope: the worker announces an MQTT v5
Receive Maximum, so the broker never has more unacknowledged messages out to it
than that; while the database is down nothing is acknowledged, the window fills,
the broker stops sending and keeps the rest.

Subscription modes (`core.broker.ingest_filters`, ``SMARTBY_INGEST_SUBSCRIPTION``):
``plain``, the default, holds an ordinary persistent subscription, which Mosquitto
restores after a restart; since every plain subscriber gets every message, only one
plain worker may run per topic prefix, and a PostgreSQL advisory lock on the prefix
makes sure of it (`WorkerClaim`).  ``shared`` joins ``$share/smartby-ingest/...`` to
split the stream between workers; Mosquitto 2.0 does not restore that subscription
after a restart, so it drops what arrives before the workers subscribe again.  The
two modes exclude each other on one prefix (plain takes the lock exclusively, shared
workers share it).

A message is acknowledged only on the connection that delivered it.  After a
reconnect the broker redelivers what was unacknowledged (MQTT-4.4.0-1), and packet
ids of the old connection may by then name other messages, so acknowledging an old
id could acknowledge a message we never stored.  Old-connection messages are still
written (inserts are idempotent) but not acknowledged.

A redelivered message without a time must get the time it got before
(`ingest.redelivery`): the Receive Maximum is capped for that argument, a batch with a
redelivered (DUP) message is prepared only once every earlier batch has committed, and
when the broker starts the session afresh the packet ids remembered for the old one
are forgotten first.  Telemetry is subscribed with Retain Handling 2 (MQTT v5
§3.8.3.1), so a retained message is not ingested again at every subscribe.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from psycopg.rows import TupleRow

from core.broker import SubscriptionMode, ingest_filters
from core.profiles import PROFILE_NAMES, Router, TopicFilter
from core.settings import Settings
from core.warnings import WarningTexts
from db.indicators import DayUpdate, update_pending
from ingest.claim import CLAIM_CHECK_S, ClaimError, WorkerClaim
from ingest.mqtt_client import FastClient, connect_or_wait
from ingest.pipeline import BatchPreparer, Message, PreparedBatch, QuarantineRow
from ingest.redelivery import MAX_RECEIVE_MAXIMUM, RecordedDelivery, Session
from ingest.upkeep import Upkeep
from ingest.writer import SPLIT_MIN_READINGS, BatchWriter, DatabaseRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")

#: persistent session lifetime: a worker restarted within a week resumes its queue
SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass
class IngestMetrics:
    """The worker's Prometheus metrics, in a registry of their own (tests run several
    workers in one process)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.messages = Counter(
            "smartby_ingest_messages", "MQTT messages handled, by outcome", ["outcome"], registry=r
        )
        self.readings = Counter(
            "smartby_ingest_readings_written", "Readings newly stored", registry=r
        )
        self.duplicates = Counter(
            "smartby_ingest_readings_duplicate",
            "Readings already stored (redelivered messages)",
            registry=r,
        )
        self.quarantined = Counter(
            "smartby_ingest_quarantined",
            "Quarantined messages or records, by reason",
            ["reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "smartby_ingest_batch_messages",
            "Messages per batch",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000, 65535),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "smartby_ingest_commit_seconds",
            "Time to write and commit one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.queue_depth = Gauge(
            "smartby_ingest_queue_depth", "Messages received and not yet written", registry=r
        )
        self.last_commit = Gauge(
            "smartby_ingest_last_commit_timestamp_seconds",
            "Unix time of the last successful commit",
            registry=r,
        )
        self.db_errors = Counter(
            "smartby_ingest_database_errors", "Failed batch writes (retried)", registry=r
        )
        self.connected = Gauge(
            "smartby_ingest_broker_connected", "1 while connected to the broker", registry=r
        )
        self.flags = Counter(
            "smartby_ingest_readings_by_flag",
            "Readings stored, by QARTOD flag at ingest (1 good, 2 not evaluated, 3 suspect,"
            " 4 fail)",
            ["flag"],
            registry=r,
        )
        self.revised = Counter(
            "smartby_ingest_qc_revised",
            "Stored readings whose QC flag a later reading worsened (written back)",
            registry=r,
        )
        self.indicator_days = Counter(
            "smartby_indicators_days_updated",
            "Local days whose indicator tables were recomputed",
            registry=r,
        )
        self.indicator_seconds = Histogram(
            "smartby_indicators_update_seconds",
            "Time to recompute one local day's indicators",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.indicator_last = Gauge(
            "smartby_indicators_last_update_timestamp_seconds",
            "Unix time the indicator job last finished a pass",
            registry=r,
        )
        self.indicator_errors = Counter(
            "smartby_indicators_errors", "Indicator job passes that failed (retried)", registry=r
        )


def profile_topics(prefix: str, profiles: Sequence[str] = PROFILE_NAMES) -> list[TopicFilter]:
    """The topics of the enabled device profiles (`core.profiles`): telemetry and status
    of every device of each."""
    return Router(profiles, prefix).filters()


def topic_filters(
    prefix: str, mode: SubscriptionMode = "plain", profiles: Sequence[str] = PROFILE_NAMES
) -> list[str]:
    """What a worker subscribes to: the enabled profiles' telemetry and status."""
    return ingest_filters(prefix, mode, profiles)


def subscriptions(
    prefix: str, mode: SubscriptionMode = "plain", profiles: Sequence[str] = PROFILE_NAMES
) -> list[tuple[str, SubscribeOptions]]:
    """The topic filters at QoS 1.  Telemetry with Retain Handling 2 (MQTT v5 §3.8.3.1:
    no retained messages at subscribe): a retained reading was ingested when it was
    published, and the worker subscribes again at every connect.  Status keeps the
    retained ``online``/``offline``, which says what a device is now."""
    return [
        (
            topic,
            SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            if kind.telemetry
            else SubscribeOptions(qos=1),
        )
        for topic, kind in zip(
            topic_filters(prefix, mode, profiles), profile_topics(prefix, profiles), strict=True
        )
    ]


class IngestWorker:
    """One worker; `run` blocks until `stop` is called (from a signal handler or a test)."""

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        *,
        client_id: str | None = None,
        metrics: IngestMetrics | None = None,
        warning_texts: WarningTexts | None = None,
        upkeep: bool = True,
    ) -> None:
        self.settings = settings
        self.database_url = database_url
        self.metrics = metrics or IngestMetrics()
        # capped below what protocol allows (65535): `ingest.redelivery` relies on it
        self.receive_maximum = min(MAX_RECEIVE_MAXIMUM, settings.ingest_queue_size)
        self.batch_size = min(settings.ingest_batch_size, self.receive_maximum)
        self.batch_seconds = settings.ingest_batch_ms / 1000
        self._client_id = client_id or settings.ingest_client_id
        self._claim: WorkerClaim | None = None
        self._claim_error: ClaimError | None = None
        self._pending: deque[Message] = deque()
        self._wake = threading.Event()
        # A plain flag, not an Event: stop() is called from signal handlers, and an
        # Event's lock taken re-entrantly in the main thread would deadlock.
        self._stop_requested = False
        self._generation = 0
        # connects that found no session at the broker, and the connection of the last
        # (set by the network thread, read by the run loop), and how many were handled
        self._fresh_sessions = 0
        self._session_generation = 0
        self._forgotten_sessions = 0
        self._connected = threading.Event()
        # prepared batches waiting for the committer; two keep both stages busy
        self._handoff: queue.Queue[tuple[list[Message], PreparedBatch] | None] = queue.Queue(2)
        # batches handed to the committer, and batches it is done with (committed or
        # abandoned at stop): a batch with a redelivery waits until they are equal
        self._handed_off = 0
        self._committed = 0
        self._committed_changed = threading.Condition()
        self._prepare_lock = threading.Lock()
        self._committer_error: BaseException | None = None
        self.registry = DatabaseRegistry(database_url)
        split = SPLIT_MIN_READINGS if settings.ingest_write_connections > 1 else None
        self.writer = BatchWriter(database_url, rollups=settings.ingest_rollups, split=split)
        self.preparer = BatchPreparer.from_settings(self.registry, settings)
        self.client: FastClient | None = None
        self._http: object | None = None
        # public warnings and retention, after each indicator pass (ingest/upkeep.py)
        self._pubacks: dict[int, ReasonCode] = {}
        # (not for a source's worker, `ingest.sources`: the platform's worker keeps them)
        self.upkeep = (
            Upkeep(settings, warning_texts, self._publish, self.metrics.registry)
            if upkeep
            else None
        )

    # ------------------------------------------------------------------ MQTT side

    @property
    def mode(self) -> SubscriptionMode:
        return self.settings.ingest_subscription

    def claim(self) -> WorkerClaim:
        """Take the subscription mode's lock (and a slot, without a client id); a
        `ClaimError` says why this worker may not run."""
        if self._claim is None:
            self._claim = WorkerClaim(
                self.database_url,
                self.settings.mqtt_topic_prefix,
                self.mode,
                slots=None if self._client_id else self.settings.ingest_max_workers,
            )
            if self._client_id is None:
                self._client_id = f"smartby-ingest-{self._claim.slot}"
        return self._claim

    @property
    def client_id(self) -> str:
        if self._client_id is None:
            self.claim()
        assert self._client_id is not None
        return self._client_id

    def _make_client(self) -> FastClient:
        client = FastClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        password = self.settings.mqtt_password
        if password is not None or self.settings.mqtt_username:
            # one broker account per worker client id, each bound to it
            client.username_pw_set(
                self.settings.mqtt_username or self.client_id,
                password.get_secret_value() if password else None,
            )
        tls = self.settings.mqtt_client_tls
        if tls is not None:
            # paho verifies the certificate and the host name (CERT_REQUIRED)
            client.tls_set(tls.ca_file, tls.cert_file, tls.key_file)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        if not flags.session_present:
            # a session of its own, packet ids from 1: what was remembered names nothing
            self._session_generation = self._generation
            self._fresh_sessions += 1
        # Subscribe on every connect: a broker that lost the session (or a new one
        # behind a load balancer) would otherwise leave us connected and deaf.
        client.subscribe(self.subscriptions())
        stale = self.stale_filters() if flags.session_present else []
        if stale:
            # a session of the other mode would get every message a second time
            client.unsubscribe(stale)
        self.metrics.connected.set(1)
        log.info(
            "connected to %s:%s as %s (session present: %s)",
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            self.client_id,
            flags.session_present,
        )

    def subscriptions(self) -> list[tuple[str, SubscribeOptions]] | list[tuple[str, int]]:
        """What this worker subscribes to at every connect (MQTT 3.1.1 takes a QoS where
        v5 takes options)."""
        return subscriptions(
            self.settings.mqtt_topic_prefix, self.mode, self.settings.ingest_profile_names
        )

    def stale_filters(self) -> list[str]:
        """What a session found at the broker may hold that this worker must drop: the
        other subscription mode's filters."""
        other: SubscriptionMode = "shared" if self.mode == "plain" else "plain"
        return topic_filters(
            self.settings.mqtt_topic_prefix, other, self.settings.ingest_profile_names
        )

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reasons: list[ReasonCode],
        _props: Properties | None,
    ) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed and len(failed) == len(reasons):
            log.error("broker refused the subscriptions: %s", ", ".join(failed))
            return
        if failed:
            # A broker whose ACL predates a profile refuses its topics: the other
            # profiles' devices are still heard (MQTT v5 §3.9.3: one reason a filter).
            refused = [
                f"{topic} ({reason})"
                for (topic, _options), reason in zip(self.subscriptions(), reasons, strict=False)
                if reason.is_failure
            ]
            log.error(
                "broker refused the subscriptions %s: those devices are not heard",
                ", ".join(refused),
            )
        self._connected.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        self._generation += 1  # packet ids of the old connection are void from now on
        self._connected.clear()
        self.metrics.connected.set(0)
        if not self._stop_requested:
            log.warning("disconnected from the broker (%s); paho reconnects", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        # Hand over only: this is paho's network thread.
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = bytes(msg._topic).decode("utf-8", "replace")
        pending = self._pending
        pending.append(
            Message(
                topic,
                bytes(msg.payload),
                msg.mid,
                msg.qos,
                time.time(),
                self._generation,
                msg.dup,
                msg.retain,
            )
        )
        if not self._wake.is_set():
            self._wake.set()
        # Our own bound, whatever the broker does: Mosquitto 2.0 was measured sending a
        # resumed session's whole backlog past the Receive Maximum.  Waiting here stops
        # paho reading the socket, so TCP pushes back on the broker; the writer frees
        # a batch within milliseconds, far inside the keepalive.
        while len(pending) > self.receive_maximum and not self._stop_requested:
            time.sleep(0.002)

    def _publish(self, topic: str, payload: bytes) -> bool:
        """Publish retained at QoS 1 and wait for the broker's PUBACK (the public
        warnings, `ingest.warnings`); False when it did not come or refused the message
        (MQTT v5 §3.4.2.1: a reason code of 0x80 or more, e.g. 0x87 not authorized)."""
        client = self.client
        if client is None or not client.is_connected():
            return False
        try:
            info = client.publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(timeout=5)
        except (RuntimeError, ValueError) as exc:
            log.warning("publishing to %s failed: %s", topic, exc)
            return False
        reason = self._pubacks.pop(info.mid, None)
        if reason is not None and reason.is_failure:
            log.warning("the broker refused the message to %s: %s", topic, reason)
            return False
        return info.is_published()

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        self._pubacks[mid] = reason

    def _ack(self, messages: Sequence[Message]) -> None:
        client = self.client
        assert client is not None
        generation = self._generation
        client.ack_many(m.mid for m in messages if m.qos == 1 and m.generation == generation)

    # -------------------------------------------------------------- database side

    def _collect(self, limit: int | None = None) -> list[Message]:
        """Up to batch_size (and ``limit``) messages, waiting at most batch_ms after the
        first."""
        pending = self._pending
        if not pending:
            self._wake.clear()
            if not pending and not self._wake.wait(0.1):
                return []
        size = self.batch_size if limit is None else min(self.batch_size, limit)
        batch: list[Message] = []
        deadline = time.monotonic() + self.batch_seconds
        while True:
            take = min(size - len(batch), len(pending))
            batch.extend(pending.popleft() for _ in range(take))
            if len(batch) >= size or self._stop_requested:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wake.clear()
            if not pending:
                self._wake.wait(min(remaining, 0.05))
        return batch

    def _retrying(self, what: str, attempt: Callable[[], T]) -> T | None:
        """Run ``attempt`` until it gets through a database outage; None if the worker
        was stopped first (then nothing of the batch is acknowledged)."""
        delay = 0.1
        while True:
            try:
                return attempt()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self.metrics.db_errors.inc()
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                log.warning("%s failed (%s); retrying in %.1f s", what, first_line, delay)
                if self._sleep_unless_stopped(delay * random.uniform(0.8, 1.2)):  # noqa: S311
                    return None
                delay = min(delay * 2, 5.0)

    def _sleep_unless_stopped(self, seconds: float) -> bool:
        """Sleep in short steps; True as soon as a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self._stop_requested and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._stop_requested

    def _prepare(
        self, messages: list[Message], session: Session, *, history: bool = True
    ) -> PreparedBatch:
        # The committer re-prepares halves of a rejected batch: one preparer user at a time.
        with self._prepare_lock:
            try:
                return self.preparer.prepare(messages, history=history, session=session)
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self.registry.close()
                raise

    def _recorded(self, packet_ids: list[int]) -> dict[int, RecordedDelivery]:
        return self.registry.recorded_deliveries(self.client_id, packet_ids)

    def _forget(self) -> bool:
        try:
            self.registry.forget_deliveries(self.client_id)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self.registry.close()
            raise
        return True

    def _await_committer(self) -> None:
        """Until every batch handed off is committed (or the committer has failed)."""
        with self._committed_changed:
            while self._committed < self._handed_off and self._committer_error is None:
                self._committed_changed.wait(0.1)

    def _session(self, batch: list[Message]) -> Session | None:
        """The session the batch came through, once what it may look up is committed:
        a batch with a redelivery waits for the committer; a session the broker
        started afresh first forgets what was remembered under the old one (None if
        the worker was stopped meanwhile)."""
        fresh = self._fresh_sessions
        if fresh != self._forgotten_sessions:
            self._await_committer()
            if self._retrying("forgetting the old session's packet ids", self._forget) is None:
                return None
            self._forgotten_sessions = fresh
        elif any(m.dup for m in batch):
            self._await_committer()
        return Session(self.client_id, self._recorded, self._session_generation)

    def _commit(self, messages: list[Message], prepared: PreparedBatch) -> bool:
        """Write one batch; a batch the database rejects for its content (not an outage)
        is split until the one message responsible is found and quarantined."""
        started = time.perf_counter()
        try:
            result = self.writer.write(prepared)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self.writer.close()
            raise
        except psycopg.Error as exc:
            session = prepared.session
            assert session is not None
            if len(messages) > 1:
                half = len(messages) // 2
                for part in (messages[:half], messages[half:]):
                    self._commit(part, self._prepare(part, session, history=False))
                return True
            log.warning("quarantining a message the database rejected: %s", exc)
            message = messages[0]
            prepared = PreparedBatch(
                quarantine=[
                    QuarantineRow(
                        message.received,
                        message.topic,
                        None,
                        "write_failed",
                        str(exc).strip()[:500],
                        message.payload,
                    )
                ],
                session=session,
                delivered=1 if message.mid else 0,
            )
            prepared.outcomes["quarantined"] += 1
            result = self.writer.write(prepared)
        m = self.metrics
        m.commit_seconds.observe(time.perf_counter() - started)
        m.last_commit.set(time.time())
        m.batch_size.observe(len(messages))
        m.readings.inc(result.inserted)
        m.revised.inc(result.revised)
        if prepared.reading_count:
            counts = np.bincount(prepared.quality, minlength=10)
            for flag in np.flatnonzero(counts):
                m.flags.labels(str(flag)).inc(int(counts[flag]))
        m.duplicates.inc(result.duplicates)
        outcomes = collections.Counter(prepared.outcomes)
        outcomes.update(result.outcome_changes)
        for outcome, count in outcomes.items():
            if count > 0:
                m.messages.labels(outcome).inc(count)
        for row in (*prepared.quarantine, *result.conflicts):
            m.quarantined.labels(row.reason).inc()
        return True

    def _committer(self) -> None:
        """Second pipeline stage: commit prepared batches in order, then acknowledge.

        Runs beside the preparing thread so that Python work on batch n+1 overlaps
        the database's work on batch n (psycopg releases the GIL while it waits)."""
        try:
            while True:
                item = self._handoff.get()
                if item is None:
                    return
                messages, prepared = item
                done = self._retrying("database write", partial(self._commit, messages, prepared))
                if done:
                    self._ack(messages)
                with self._committed_changed:
                    self._committed += 1
                    self._committed_changed.notify_all()
        except BaseException as exc:
            self._committer_error = exc
            self._stop_requested = True
            raise

    def _indicators(self) -> None:
        """Third thread: every ``indicators_interval_s``, recompute the indicator tables
        of the local days that received readings (`db.indicators`).  Several
        workers may run it; ``SKIP LOCKED`` gives each a different day.  A failed
        pass is counted, logged and retried on the next tick: the days stay pending."""
        interval = self.settings.indicators_interval_s
        m = self.metrics
        conn: psycopg.Connection[TupleRow] | None = None

        def progress(update: DayUpdate) -> None:
            m.indicator_days.inc()
            log.debug("indicators of %s recomputed: %s", update.day.date(), update)

        try:
            while not self._sleep_unless_stopped(interval):
                started = time.perf_counter()
                try:
                    if conn is None or conn.closed or conn.broken:
                        conn = psycopg.connect(
                            self.database_url,
                            application_name="smartby-indicators",
                            connect_timeout=5,
                        )
                    days = update_pending(conn, self.settings, progress=progress)
                    if self.upkeep is not None:
                        self.upkeep.run(conn)
                except psycopg.Error as exc:
                    m.indicator_errors.inc()
                    first_line = (str(exc).strip() or repr(exc)).splitlines()[0]
                    log.warning("indicator update failed (%s); retrying next pass", first_line)
                    continue
                if days:
                    m.indicator_seconds.observe((time.perf_counter() - started) / len(days))
                m.indicator_last.set(time.time())
        finally:
            if conn is not None:
                conn.close()

    # ------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Connect (database first: no point taking messages we cannot store)."""
        self.claim()
        self.registry.load()
        if self.settings.ingest_qc:
            self.preparer.seed_history(self.registry.recent_readings())
        if self.settings.ingest_metrics_port:
            self._http = start_http_server(
                self.settings.ingest_metrics_port,
                addr=self.settings.ingest_metrics_host,
                registry=self.metrics.registry,
            )
        self.client = self._make_client()
        self._connect(self.client)
        self.client.loop_start()

    def _address(self) -> tuple[str, int]:
        return self.settings.mqtt_host, self.settings.mqtt_port

    def _connect(self, client: FastClient) -> None:
        """A persistent MQTT 5 session, whose backlog the broker hands us no faster than
        our receive maximum."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.receive_maximum
        connect_or_wait(client, *self._address(), clean_start=False, properties=props)

    def wait_connected(self, timeout: float = 10) -> bool:
        """True once connected and subscribed (SUBACK received)."""
        return self._connected.wait(timeout)

    def run(self) -> None:
        """Consume until `stop`; then drain what already arrived and return."""
        if self.client is None:
            self.start()
        committer = threading.Thread(target=self._committer, name="ingest-committer", daemon=True)
        committer.start()
        keeper = threading.Thread(target=self._keep_claim, name="ingest-claim", daemon=True)
        keeper.start()
        indicators = None
        if self.settings.indicators_interval_s > 0:
            indicators = threading.Thread(
                target=self._indicators, name="ingest-indicators", daemon=True
            )
            indicators.start()
        # Once stopping, write what had arrived by then and no more: under a backlog the
        # broker refills the window as fast as we acknowledge, so "until empty" could
        # take as long as the backlog.  What arrives later stays unacknowledged (and
        # unwritten), and the broker redelivers it to the next worker.
        left: int | None = None
        try:
            while True:
                if self._stop_requested and left is None:
                    left = len(self._pending)
                if left is not None and left <= 0:
                    break  # a clean stop leaves little for the broker to redeliver
                batch = self._collect(left)
                if left is not None:
                    left -= len(batch)
                self.metrics.queue_depth.set(len(self._pending))
                if not batch:
                    continue
                session = self._session(batch)
                if session is None:
                    break
                prepared = self._retrying(
                    "preparing a batch", partial(self._prepare, batch, session)
                )
                if prepared is None:
                    break
                self._handoff.put((batch, prepared))
                self._handed_off += 1
        finally:
            self._handoff.put(None)
            committer.join()
            self._stop_requested = True  # the claim's keeper too
            keeper.join()
            if indicators is not None:
                self._stop_requested = True
                indicators.join()
            self.close()
        if self._committer_error is not None:
            raise self._committer_error
        if self._claim_error is not None:
            raise self._claim_error

    def _keep_claim(self) -> None:
        """Every few seconds: the claim still holds (`WorkerClaim.keep`); if another
        worker took it while the database was away, stop (the batch in hand is
        finished, nothing more is taken)."""
        while not self._sleep_unless_stopped(CLAIM_CHECK_S):
            claim = self._claim
            if claim is None:
                return
            try:
                claim.keep()
            except ClaimError as exc:
                log.error("%s; stopping", exc)
                self._claim_error = exc
                self._stop_requested = True
            except psycopg.Error as exc:
                first_line = (str(exc).strip() or repr(exc)).splitlines()[0]
                log.warning("cannot check the worker's claim (%s); retrying", first_line)

    def stop(self) -> None:
        """Ask `run` to finish its batch, drain, and return (safe in a signal handler)."""
        self._stop_requested = True

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None
        self.writer.close()
        self.registry.close()
        if self._claim is not None:
            self._claim.close()
            self._claim = None
        if self._http is not None:
            server = self._http[0] if isinstance(self._http, tuple) else None
            if server is not None:
                with contextlib.suppress(Exception):
                    server.shutdown()
                    server.server_close()
            self._http = None
