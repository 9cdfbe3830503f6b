"""From a batch of MQTT messages to columns of readings and rows of quarantine.

Per message: the device comes from the topic (never the payload), the payload is
decoded, and every reading finds its series and its conversion to the metric's
canonical unit.  The per-reading work is a few dict lookups and list appends; the
arithmetic (unit conversion, time checks, QC flags) then runs once over the whole
batch in NumPy.  Nothing is dropped: a message or record that cannot be stored
becomes a quarantine row with a reason.

A message without a time takes its reception time, except that a redelivery of one
already committed takes the time it got then (`ingest.redelivery`), and a retained
one replayed by the broker is not stored again.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import orjson

from core import qc
from core.settings import Settings
from core.units import UnitError, conversion
from db.catalogue import Metric
from ingest.decode import DecodeError, decode, metric_key
from ingest.redelivery import Remembered, Session, TimeAnchors

#: Bound on the resolved-target cache (a stream of random names must not grow it forever).
_TARGET_CACHE_LIMIT = 200_000
#: How much of an oversized payload is kept in quarantine, as evidence.
OVERSIZED_KEEP_BYTES = 4096


@dataclass(slots=True)
class Message:
    """One MQTT message as handed over by the network thread."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 1
    received: float = 0.0  # epoch seconds
    generation: int = 0  # which broker connection delivered it (acks only on that one)
    dup: bool = False  # sent before, not acknowledged (DUP, MQTT v5 §3.3.1.1)
    retain: bool = False  # from the broker's retained store, not live (RETAIN, §3.3.1.3)


@dataclass(slots=True)
class QuarantineRow:
    received: float
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes


@dataclass(slots=True)
class DeviceStatus:
    online: bool | None
    battery: float | None
    rssi: float | None
    seen: float


@dataclass(slots=True)
class SeriesTarget:
    """What a reading needs to know about its series to be stored."""

    series_id: int
    metric: Metric


class Registry(Protocol):
    """Where devices and series are looked up (the database, behind caches)."""

    def device_status(self, device_id: str) -> str | None:
        """'active', 'disabled', or None for a device nobody registered."""
        ...

    def metric(self, key: str) -> Metric | None: ...

    def series(self, device_id: str, metric: Metric) -> int:
        """The series id of device × metric, created on first use."""
        ...


@dataclass(frozen=True, slots=True)
class RecentReadings:
    """The last stored readings of series, to seed QC's history at start-up."""

    series_ids: npt.NDArray[np.int32]
    metrics: npt.NDArray[np.str_]
    times_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int16]


@dataclass(slots=True)
class PreparedBatch:
    """Everything one transaction writes for a batch of messages."""

    times_us: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    series_ids: npt.NDArray[np.int32] = field(default_factory=lambda: np.empty(0, np.int32))
    values: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, np.float64))
    quality: npt.NDArray[np.int16] = field(default_factory=lambda: np.empty(0, np.int16))
    quarantine: list[QuarantineRow] = field(default_factory=list)
    statuses: dict[str, DeviceStatus] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    #: stored readings of earlier batches whose QC flag this batch worsened (a spike
    #: is only seen once the next reading exists): their new flags, to write back
    revised: qc.SeriesTail = field(default_factory=qc.SeriesTail.empty)
    #: per message: 'stored', 'partial' (some records quarantined), 'quarantined',
    #: 'status', 'retained_replay' (a time-less retained message, not stored again)
    outcomes: Counter[str] = field(default_factory=Counter)
    #: where the readings came from: the messages, the message index of each reading,
    #: the device of each message with readings, and the messages counted 'partial'
    #: (the writer quarantines a reading that conflicts with a stored one)
    messages: Sequence[Message] = ()
    origins: npt.NDArray[np.intp] = field(default_factory=lambda: np.empty(0, np.intp))
    devices: dict[int, str] = field(default_factory=dict)
    partial: set[int] = field(default_factory=set)
    #: the broker session, its messages with a packet id, and its time-less ones to
    #: remember (`ingest.redelivery`)
    session: Session | None = None
    delivered: int = 0
    remembered: Remembered | None = None

    @property
    def reading_count(self) -> int:
        return len(self.values)


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload_bytes: int
    max_past_s: float
    max_future_s: float

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.ingest_max_payload_bytes,
            settings.ingest_max_past_days * 86400,
            settings.ingest_max_future_s,
        )


def parse_topic(topic: str, prefix: str) -> tuple[str, str] | None:
    """``<prefix>/<device>/<kind>`` → (device, kind); None for anything else."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != prefix or not parts[1]:
        return None
    return parts[1], parts[2]


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class BatchPreparer:
    """Turns messages into a `PreparedBatch`; holds no state between batches but caches."""

    def __init__(
        self, registry: Registry, limits: Limits, topic_prefix: str, *, quality_control: bool = True
    ) -> None:
        self.registry = registry
        self.limits = limits
        self.prefix = topic_prefix
        # QARTOD tests beyond gross range need each series' recent readings: the tail
        # of the previous batch, kept here (the preparer is single-threaded).
        self.quality_control = quality_control
        self._qc_configs: dict[int, qc.QcConfig] = {}
        self._qc_table: qc.QcTable | None = None
        self._qc_tail: qc.SeriesTail | None = None
        # (from_unit, metric key) -> (scale, offset) or the UnitError's message
        self._conversions: dict[tuple[str | None, str], tuple[float, float] | str] = {}
        # (device, name, unit, is_sum) -> row of the target table, or a rejection.
        # One dict lookup per reading instead of metric, series and unit look-ups.
        self._targets: dict[tuple[str, str, str | None, bool], int | tuple[str, str]] = {}
        # rows: (series id, scale, offset, min, max)
        self._table: list[tuple[int, float, float, float, float]] = []
        self._table_arrays: tuple[npt.NDArray[np.int32], npt.NDArray[np.float64]] | None = None

    def _conversion(self, unit: str | None, metric: Metric) -> tuple[float, float] | str:
        key = (unit, metric.key)
        found = self._conversions.get(key)
        if found is None:
            if unit is None or unit == metric.unit:
                found = (1.0, 0.0)
            else:
                try:
                    found = conversion(unit, metric.unit, metric.molar_mass)
                except UnitError as exc:
                    found = str(exc)
            self._conversions[key] = found
        return found

    @classmethod
    def from_settings(cls, registry: Registry, settings: Settings) -> BatchPreparer:
        """The preparer ingest runs with these settings (limits, topic prefix, QC)."""
        return cls(
            registry,
            Limits.of(settings),
            settings.mqtt_topic_prefix,
            quality_control=settings.ingest_qc,
        )

    def seed_history(self, recent: RecentReadings) -> int:
        """Start QC from the series' last stored readings instead of from nothing, so a
        restarted worker still sees a spike or a jump in the first reading it gets
        (the flat-line run restarts from these readings).  Returns the rows kept."""
        keep = np.zeros(len(recent.series_ids), dtype=bool)
        for key in np.unique(recent.metrics).tolist():
            metric = self.registry.metric(str(key))
            if metric is None:
                continue
            rows = recent.metrics == key
            keep |= rows
            for series_id in np.unique(recent.series_ids[rows]).tolist():
                self._qc_configs.setdefault(
                    int(series_id),
                    qc.default_config(metric.key, metric.min_value, metric.max_value),
                )
        self._qc_table = None
        order = np.flatnonzero(keep)[np.lexsort((recent.times_us[keep], recent.series_ids[keep]))]
        self._qc_tail = qc.SeriesTail(
            recent.series_ids[order],
            recent.times_us[order],
            recent.values[order],
            recent.quality[order],
        )
        return len(order)

    def prepare(
        self,
        messages: Sequence[Message],
        *,
        history: bool = True,
        session: Session | None = None,
    ) -> PreparedBatch:
        """The batch's rows, flags and quarantine.  ``history=False`` runs only the
        tests that need no earlier readings, and leaves the kept tail alone (for
        re-preparing parts of a batch the tail has already seen).  With a ``session``,
        time-less messages keep their time across redelivery (`ingest.redelivery`)."""
        batch = PreparedBatch(session=session)
        anchors = TimeAnchors(session, messages) if session is not None else None
        delivered = 0  # messages with a packet id
        times: list[float] = []
        raw: list[float] = []
        tids: list[int] = []  # row of the target table per reading
        origin: list[int] = []  # message index per reading
        device_of: dict[int, str] = {}  # message index -> device, for those with readings
        targets = self._targets
        if len(targets) > _TARGET_CACHE_LIMIT:
            # between batches only: readings of this batch point into the table
            targets.clear()
            self._table.clear()
            self._table_arrays = None

        for index, message in enumerate(messages):
            if message.mid:
                delivered += 1
            route = parse_topic(message.topic, self.prefix)
            if route is None:
                self._reject(
                    batch,
                    message,
                    None,
                    "bad_topic",
                    f"topic {_short(message.topic)!r} is not {self.prefix}/<device>/"
                    "telemetry or status",
                )
                continue
            device_id, kind = route
            if len(message.payload) > self.limits.max_payload_bytes:
                self._reject(
                    batch,
                    message,
                    device_id,
                    "oversized",
                    f"payload of {len(message.payload)} bytes exceeds the limit of "
                    f"{self.limits.max_payload_bytes}; first {OVERSIZED_KEEP_BYTES} "
                    f"bytes kept, sha256 {hashlib.sha256(message.payload).hexdigest()}",
                    message.payload[:OVERSIZED_KEEP_BYTES],
                )
                continue
            state = self.registry.device_status(device_id)
            if state is None:
                self._reject(
                    batch,
                    message,
                    device_id,
                    "unknown_device",
                    f"device {device_id!r} is not registered",
                )
                continue
            if state != "active":
                self._reject(
                    batch, message, device_id, "device_disabled", f"device {device_id!r} is {state}"
                )
                continue
            if kind == "status":
                self._status(batch, message, device_id)
                continue
            if kind != "telemetry":
                self._reject(
                    batch,
                    message,
                    device_id,
                    "bad_topic",
                    f"unknown message kind {kind!r} (expected telemetry or status)",
                )
                continue
            try:
                decoded = decode(message.payload, now=message.received)
                if decoded.anchored:
                    if message.retain:
                        # replayed from the retained store: when it was measured is unknown
                        batch.outcomes["retained_replay"] += 1
                        continue
                    if anchors is not None and message.mid:
                        anchor = anchors.anchor(message, delivered)
                        if anchor is not None:
                            decoded = decode(message.payload, now=anchor)
            except DecodeError as exc:
                self._reject(batch, message, device_id, exc.reason, exc.detail)
                continue

            problems: dict[str, list[str]] = {}
            for rejected in decoded.rejected:
                problems.setdefault(rejected.reason, []).append(
                    f"record {rejected.position}: {rejected.detail}"
                )
            stored = 0
            for reading in decoded.readings:
                key = (device_id, reading.name, reading.unit, reading.is_sum)
                target = targets.get(key)
                if target is None:
                    target = self._resolve(device_id, reading.name, reading.unit, reading.is_sum)
                    targets[key] = target
                if target.__class__ is int:
                    times.append(reading.time)
                    raw.append(reading.value)
                    tids.append(target)
                    origin.append(index)
                    stored += 1
                else:
                    reason, detail = target  # type: ignore[misc]
                    problems.setdefault(reason, []).append(detail)
            for reason, details in problems.items():
                self._reject(
                    batch, message, device_id, reason, "; ".join(details)[:1000], count=False
                )
            if stored:
                device_of[index] = device_id
                if problems:
                    batch.partial.add(index)
            outcome = "partial" if problems and stored else "stored" if stored else "quarantined"
            batch.outcomes[outcome] += 1

        batch.delivered = delivered
        if anchors is not None:
            batch.remembered = anchors.remembered()
        if times:
            self._finish(batch, messages, device_of, times, raw, tids, origin, history=history)
        return batch

    def _resolve(
        self, device_id: str, name: str, unit: str | None, is_sum: bool
    ) -> int | tuple[str, str]:
        """Where readings of this device, name and unit go: a row of the target table,
        or (reason, detail) for quarantine.  Cached, so this runs once per stream."""
        key = metric_key(name)
        metric = self.registry.metric(key)
        if metric is None:
            return "unknown_metric", f"{_short(name, 60)!r}: no metric {key!r} in the catalogue"
        if is_sum and metric.value_type == "gauge":
            return (
                "unexpected_sum",
                f"{key}: a SenML sum for a metric that is not a count or register",
            )
        conv = self._conversion(unit, metric)
        if isinstance(conv, str):
            return "bad_unit", f"{key}: {conv}"
        table = self._table
        series_id = self.registry.series(device_id, metric)
        if series_id not in self._qc_configs:
            self._qc_configs[series_id] = qc.default_config(
                metric.key, metric.min_value, metric.max_value
            )
            self._qc_table = None
        table.append(
            (
                series_id,
                conv[0],
                conv[1],
                metric.min_value,
                metric.max_value,
            )
        )
        self._table_arrays = None
        return len(table) - 1

    def _target_arrays(self) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float64]]:
        """The target table as arrays: series ids, and (scale, offset, min, max) columns."""
        if self._table_arrays is None:
            series = np.fromiter(
                (t[0] for t in self._table), dtype=np.int32, count=len(self._table)
            )
            floats = np.array([t[1:] for t in self._table], dtype=np.float64).reshape(-1, 4)
            self._table_arrays = (series, floats)
        return self._table_arrays

    def _finish(
        self,
        batch: PreparedBatch,
        messages: Sequence[Message],
        device_of: dict[int, str],
        times: list[float],
        raw: list[float],
        tids: list[int],
        origin: list[int],
        *,
        history: bool = True,
    ) -> None:
        series_of, params = self._target_arrays()
        tid = np.asarray(tids, dtype=np.intp)
        at = np.asarray(origin, dtype=np.intp)
        t = np.asarray(times, dtype=np.float64)
        received_of = np.fromiter(
            (m.received for m in messages), dtype=np.float64, count=len(messages)
        )
        received = received_of[at]
        scale, offset, lo, hi = (params[tid, i] for i in range(4))
        values = np.asarray(raw, dtype=np.float64) * scale + offset
        too_old = t < received - self.limits.max_past_s
        too_new = t > received + self.limits.max_future_s
        bad_value = ~np.isfinite(values)  # e.g. a huge number overflowing in conversion
        reject = too_old | too_new | bad_value
        if reject.any():
            for position in np.flatnonzero(reject):
                message = messages[at[position]]
                if too_old[position]:
                    reason = "time_too_old"
                elif too_new[position]:
                    reason = "time_in_future"
                else:
                    reason = "non_finite"
                self._reject(
                    batch,
                    message,
                    device_of[int(at[position])],
                    reason,
                    f"reading at epoch {t[position]:.3f} s, received at {message.received:.3f} s",
                    count=False,
                )
            keep = ~reject
            t, values, tid, at, lo, hi = (
                t[keep],
                values[keep],
                tid[keep],
                at[keep],
                lo[keep],
                hi[keep],
            )
        batch.times_us = np.round(t * 1e6).astype(np.int64)
        batch.series_ids = series_of[tid]
        batch.values = values
        batch.messages = messages
        batch.origins = at
        batch.devices = device_of
        if self.quality_control and history:
            if self._qc_table is None:
                self._qc_table = qc.QcTable.build(self._qc_configs)
            outcome = qc.evaluate_batch(
                batch.series_ids, batch.times_us, values, self._qc_table, self._qc_tail
            )
            self._qc_tail = outcome.tail
            batch.revised = outcome.revised
            batch.quality = outcome.flags
        else:
            batch.quality = qc.gross_range(values, lo, hi)
        # last_seen: latest reception time per device that delivered readings
        for i in np.unique(at):
            message = messages[int(i)]
            device = device_of[int(i)]
            batch.last_seen[device] = max(batch.last_seen.get(device, 0.0), message.received)

    def _status(self, batch: PreparedBatch, message: Message, device_id: str) -> None:
        """``online``/``offline`` text (retained / last will), or a JSON object with
        ``status``, ``battery`` (V or %) and ``rssi`` (dBm)."""
        text = message.payload.strip()
        online: bool | None = None
        battery = rssi = None
        if text in (b"online", b"offline"):
            online = text == b"online"
        else:
            try:
                doc = orjson.loads(text)
            except orjson.JSONDecodeError:
                doc = None
            if not isinstance(doc, dict):
                self._reject(
                    batch,
                    message,
                    device_id,
                    "bad_status",
                    "status is neither online/offline nor a JSON object",
                )
                return
            state = doc.get("status")
            if state in ("online", "offline"):
                online = state == "online"
            battery = _finite(doc.get("battery"))
            rssi = _finite(doc.get("rssi"))
            if online is None and battery is None and rssi is None:
                self._reject(
                    batch,
                    message,
                    device_id,
                    "bad_status",
                    "status object has no status, battery or rssi",
                )
                return
        previous = batch.statuses.get(device_id)
        if previous is None or previous.seen <= message.received:
            batch.statuses[device_id] = DeviceStatus(online, battery, rssi, message.received)
        batch.outcomes["status"] += 1

    @staticmethod
    def _reject(
        batch: PreparedBatch,
        message: Message,
        device_id: str | None,
        reason: str,
        detail: str,
        payload: bytes | None = None,
        *,
        count: bool = True,
    ) -> None:
        batch.quarantine.append(
            QuarantineRow(
                message.received,
                message.topic,
                device_id,
                reason,
                detail,
                message.payload if payload is None else payload,
            )
        )
        if count:
            batch.outcomes["quarantined"] += 1


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if np.isfinite(number) else None
