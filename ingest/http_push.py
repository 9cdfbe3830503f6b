"""HTTP push: storing the pushes the API accepted, through the MQTT path's pipeline.

The API authenticates a device and reads its body (``api.routes.ingest``); here a
`Push` becomes one message of a batch, prepared by the same `BatchPreparer` (decode,
units, time checks, QC) and written by the same `BatchWriter` (readings by COPY, rollups,
quarantine, last seen) as the messages of the MQTT worker, in one transaction.  Each
push's future is resolved only after that transaction committed, so the API answers 2xx
only for readings that are stored (the HTTP twin of MQTT's ack after commit).

One committer thread owns the preparer and the writer (QC keeps each series' recent
readings between batches, which needs one writer per preparer).  Pushes wait in a
bounded queue (`PushBusy` beyond it: 503); the thread takes whatever is waiting, up to
``batch`` pushes, as one batch, so concurrent clients share a transaction (group
commit) instead of queueing for one each.  A batch holds at most one push per device:
whatever the pipeline quarantines is per device, so each push gets its own rejections.

Redelivery: a push with times is stored once, however often it is sent (the readings'
key).  A time-less one is stamped on arrival; a retry with the same ``Idempotency-Key``
gets the first post's stamp again (migration 0015), and without a key a retry is new.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import orjson
import psycopg
from psycopg.rows import TupleRow

from core.push import (
    IdempotencyKeyReused,
    Push,
    PushBusy,
    PushOutcome,
    PushRejection,
)
from core.sensor_community import SensorCommunityError, SensorCommunityPack, convert
from core.settings import Settings
from ingest.pipeline import BatchPreparer, Message, PreparedBatch, QuarantineRow
from ingest.writer import BatchWriter, DatabaseRegistry

log = logging.getLogger(__name__)

#: an Idempotency-Key is remembered this long after its first use
KEY_LIFETIME_S = 86_400
#: reasons the pipeline gives a reading, not a whole message (`ingest.pipeline`: the
#: metric, unit and time checks; `ingest.writer`: a conflicting stored value)
RECORD_REASONS = frozenset(
    {
        "unknown_metric",
        "unexpected_sum",
        "bad_unit",
        "time_too_old",
        "time_in_future",
        "non_finite",
        "conflicting_value",
    }
)
#: "record 3: ..." in a decode rejection's detail
_RECORD = re.compile(r"record (\d+):")
#: "'SDS_P0': no metric ..." in a rejection of a name
_NAME = re.compile(r"^'([^']*)'")


@dataclass(slots=True)
class _Pending:
    push: Push
    future: Future[PushOutcome]
    #: filled while the batch is built
    messages: list[Message] = field(default_factory=list)
    pack: SensorCommunityPack | None = None
    names: list[str] = field(default_factory=list)  # resolved name of each record


def _expected_form(form: str, payload: bytes) -> str | None:
    """Why the body is not the declared media type, or None."""
    head = payload.lstrip()[:1]
    if form == "senml+json" and head != b"[":
        return "application/senml+json is a JSON array of SenML records (RFC 8428 §5)"
    if form == "json" and head not in (b"{", b"["):
        return "application/json is a JSON object (or a SenML array)"
    if form == "senml+cbor" and not (payload[:1] and 0x80 <= payload[0] <= 0x9F):
        return "application/senml+cbor is a CBOR array of SenML records (RFC 8428 §6)"
    return None


def _record_names(payload: bytes, form: str) -> list[str]:
    """The resolved name of each record of a JSON body (Base Name + Name, RFC 8428 §4.6,
    or each member of the plain object), to name the record a rejection is about."""
    if form not in ("senml+json", "json", "sensor-community"):
        return []
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return []
    if isinstance(document, dict):
        return [str(k) for k in document]
    names: list[str] = []
    base = ""
    for record in document if isinstance(document, list) else []:
        if isinstance(record, dict):
            if isinstance(record.get("bn"), str):
                base = record["bn"]
            names.append(base + str(record.get("n", "")))
        else:
            names.append("")
    return names


class HttpPushService:
    """The `core.push.PushSink` of the API process: a committer thread and its queue."""

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        *,
        batch: int = 64,
        queue_size: int | None = None,
    ) -> None:
        self.prefix = settings.mqtt_topic_prefix
        self.url = database_url
        self.batch = batch
        self.registry = DatabaseRegistry(database_url)
        self.preparer = BatchPreparer.from_settings(self.registry, settings)
        self.writer = BatchWriter(database_url, application_name="smartby-http-ingest")
        self._queue: queue.Queue[_Pending] = queue.Queue(
            queue_size if queue_size is not None else settings.ingest_http_queue
        )
        self._keys: psycopg.Connection[TupleRow] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held: list[_Pending] = []  # taken from the queue, for a later batch
        self._last_expiry = 0.0

    # ------------------------------------------------------------------ the API side

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="http-push", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self.writer.close()
        self.registry.close()
        if self._keys is not None:
            self._keys.close()

    def submit(self, push: Push) -> Future[PushOutcome]:
        future: Future[PushOutcome] = Future()
        try:
            self._queue.put_nowait(_Pending(push, future))
        except queue.Full:
            future.set_exception(PushBusy())
        return future

    # ------------------------------------------------------------------ the committer

    def _run(self) -> None:
        while not self._stop.is_set():
            taken = self._take()
            if not taken:
                continue
            try:
                self._commit(taken)
            except Exception as exc:  # the database failed: every push of the batch hears it
                log.warning("http push batch of %d failed: %s", len(taken), type(exc).__name__)
                for pending in taken:
                    if not pending.future.done():
                        pending.future.set_exception(exc)

    def _take(self) -> list[_Pending]:
        """Up to ``batch`` pushes, at most one per device, oldest first."""
        waiting = self._held
        self._held = []
        if not waiting:
            try:
                waiting.append(self._queue.get(timeout=0.2))
            except queue.Empty:
                return []
        while len(waiting) < 4 * self.batch:
            try:
                waiting.append(self._queue.get_nowait())
            except queue.Empty:
                break
        taken: list[_Pending] = []
        devices: set[str] = set()
        for pending in waiting:
            device = pending.push.device_id
            if len(taken) < self.batch and device not in devices:
                devices.add(device)
                taken.append(pending)
            else:
                self._held.append(pending)
        return taken

    def _keys_connection(self) -> psycopg.Connection[TupleRow]:
        if self._keys is None or self._keys.closed or self._keys.broken:
            self._keys = psycopg.connect(
                self.url, autocommit=True, application_name="smartby-http-ingest-keys"
            )
        return self._keys

    def _anchor(self, push: Push) -> float:
        """The time a time-less body counts from: its arrival, or under a known
        Idempotency-Key the first arrival (`IdempotencyKeyReused` for another body)."""
        if push.idempotency_key is None:
            return push.received
        digest = hashlib.blake2b(push.payload, digest_size=16).digest()
        conn = self._keys_connection()
        now = time.time()
        if now - self._last_expiry > 60:
            conn.execute(
                "DELETE FROM http_push_keys WHERE created_at < now() - make_interval(secs => %s)",
                (KEY_LIFETIME_S,),
            )
            self._last_expiry = now
        row = conn.execute(
            "WITH new AS (INSERT INTO http_push_keys (device_id, key, digest, anchor)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING digest, anchor)"
            " SELECT digest, anchor FROM new UNION ALL SELECT digest, anchor FROM"
            " http_push_keys WHERE device_id = %s AND key = %s LIMIT 1",
            (
                push.device_id,
                push.idempotency_key,
                digest,
                push.received,
                push.device_id,
                push.idempotency_key,
            ),
        ).fetchone()
        assert row is not None
        if bytes(row[0]) != digest:
            raise IdempotencyKeyReused()
        return float(row[1])

    def _messages(self, pending: _Pending) -> list[Message] | PushOutcome:
        push = pending.push
        telemetry = f"{self.prefix}/{push.device_id}/telemetry"
        if push.form == "sensor-community":
            try:
                pack = convert(push.payload)
            except SensorCommunityError as exc:
                return PushOutcome(0, (PushRejection(exc.reason, exc.detail),), undecodable=True)
            pending.pack = pack
            pending.names = [str(r.get("n", "")) for r in pack.records]
            messages = []
            if pack.records:
                messages.append(Message(telemetry, pack.senml(), received=push.received))
            if pack.rssi is not None:
                status = orjson.dumps({"rssi": pack.rssi})
                topic = f"{self.prefix}/{push.device_id}/status"
                messages.append(Message(topic, status, received=push.received))
            return messages
        wrong = _expected_form(push.form, push.payload)
        if wrong is not None:
            rejection = PushRejection("content_type_mismatch", wrong)
            return PushOutcome(0, (rejection,), undecodable=True)
        pending.names = _record_names(push.payload, push.form)
        return [Message(telemetry, push.payload, received=self._anchor(push))]

    def _commit(self, taken: Sequence[_Pending]) -> None:
        messages: list[Message] = []
        owner: list[int] = []  # pending index of each message
        early: list[QuarantineRow] = []  # refused before the pipeline
        answers: dict[int, PushOutcome] = {}  # theirs, given once the quarantine committed
        for i, pending in enumerate(taken):
            try:
                made = self._messages(pending)
            except IdempotencyKeyReused as exc:
                pending.future.set_exception(exc)
                continue
            if isinstance(made, PushOutcome):
                push = pending.push
                rejection = made.rejected[0]
                early.append(
                    QuarantineRow(
                        push.received,
                        push.label,
                        push.device_id,
                        rejection.reason,
                        rejection.detail,
                        push.payload,
                    )
                )
                answers[i] = made
                continue
            pending.messages = made
            messages.extend(made)
            owner.extend([i] * len(made))
        batch = self.preparer.prepare(messages) if messages else PreparedBatch()
        # the quarantine and the conflicts say where a push came from, with its own body
        by_device = {p.push.device_id: p for p in taken}
        for row in batch.quarantine:
            source = by_device.get(row.device_id) if row.device_id else None
            if source is not None:
                row.topic = source.push.label
                row.payload = source.push.payload
        for message, i in zip(messages, owner, strict=True):
            message.topic = taken[i].push.label
            message.payload = taken[i].push.payload
        batch.quarantine.extend(early)
        result = self.writer.write(batch)
        per_message = np.bincount(batch.origins, minlength=len(messages)).tolist()
        readings: dict[int, int] = {}
        for count, i in zip(per_message, owner, strict=True):
            readings[i] = readings.get(i, 0) + int(count)
        rows: dict[str, list[QuarantineRow]] = {}
        for row in [*batch.quarantine, *result.conflicts]:
            if row.device_id is not None:
                rows.setdefault(row.device_id, []).append(row)
        for i, pending in enumerate(taken):
            if i in answers:
                pending.future.set_result(answers[i])
                continue
            if pending.future.done():
                continue
            device = pending.push.device_id
            mine = [r for r in rows.get(device, []) if r.reason != "conflicting_value"]
            conflicts = [r for r in result.conflicts if r.device_id == pending.push.device_id]
            lost = sum(r.detail.count("; ") + 1 for r in conflicts)
            rejections = tuple(self._rejection(pending, r) for r in [*mine, *conflicts])
            stored = max(readings.get(i, 0) - lost, 0)
            # nothing stored and no rejection about a record: the body itself was refused
            whole = (
                bool(rejections)
                and not stored
                and all(r.record is None and r.reason not in RECORD_REASONS for r in rejections)
            )
            pending.future.set_result(PushOutcome(stored, rejections, undecodable=whole))

    @staticmethod
    def _rejection(pending: _Pending, row: QuarantineRow) -> PushRejection:
        """The rejection as the client hears it, naming its record where one is named."""
        record: int | None = None
        found = _RECORD.search(row.detail)
        if found is not None:
            record = int(found.group(1))
        else:
            named = _NAME.match(row.detail)
            if named is not None and named.group(1) in pending.names:
                record = pending.names.index(named.group(1))
        if record is not None and pending.pack is not None and record < len(pending.pack.entries):
            record = pending.pack.entries[record]  # the index in sensordatavalues
        return PushRejection(row.reason, row.detail, record)
