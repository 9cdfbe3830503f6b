"""From a batch of MQTT messages to columns of readings and rows of quarantine.

Per message: the topic names a device profile and, in that profile's terms, the device
(`core.profiles`: the smartby device id, a Tasmota topic, an ESPHome node, a LoRaWAN
device id or DevEUI), which the registry maps to a device id — never the payload.  The
profile decodes the payload, and every reading finds its series and its conversion to
the metric's canonical unit through the device's field map and the catalogue
(`ingest.targets`).  The per-reading work is a few dict lookups and list appends; the
arithmetic (unit conversion, time checks, QC flags) then runs once over the whole batch
in NumPy.  Nothing is dropped: a message or record that cannot be stored becomes a
quarantine row with a reason — except a field the catalogue or the device declares as
not worth keeping.  Radio metadata and battery levels become device-health rows.

A message without a time takes its reception time, except that a redelivery of one
already committed takes the time it got then (`ingest.redelivery`), and a retained
one replayed by the broker is not stored again.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from core import qc
from core.profiles import PROFILE_NAMES, DeviceOptions, FieldTarget, Route, Router
from core.readings import DecodeError, DecodeResult
from core.settings import Settings
from db.catalogue import Metric
from ingest.redelivery import Remembered, Session, TimeAnchors
from ingest.targets import (
    TARGET_CACHE_LIMIT,
    HealthTarget,
    Ignored,
    Rejection,
    TargetResolver,
    short,
)

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
class HealthRow:
    """One ``device_health`` row: how a device was heard at ``time``."""

    device_id: str
    time: float
    rssi: float | None = None
    snr: float | None = None
    gateways: int | None = None
    battery_v: float | None = None
    battery_pct: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """What ingest needs to know of a registered device."""

    id: str
    status: str  # 'active' or 'disabled'
    profile: str = "smartby"
    options: DeviceOptions = field(default_factory=DeviceOptions)
    fields: Mapping[str, FieldTarget] = field(default_factory=dict)


class Registry(Protocol):
    """Where devices and series are looked up (the database, behind caches)."""

    def device(self, device_id: str) -> DeviceEntry | None:
        """The device, or None for one nobody registered."""
        ...

    def lookup(self, profile: str, key: str) -> str | None:
        """The id of the device a profile's key (a Tasmota topic, a DevEUI) names."""
        ...

    def metric(self, key: str) -> Metric | None: ...

    def aliases(self) -> Mapping[str, FieldTarget]:
        """The catalogue's field aliases, by lower-case field name or path."""
        ...

    def series(self, device_id: str, metric: Metric) -> int:
        """The series id of device × metric, created on first use."""
        ...

    def many_series(self, pairs: Sequence[tuple[str, Metric]]) -> list[int]:
        """`series` of each pair, those missing created together."""
        ...

    @property
    def generation(self) -> int:
        """Changes whenever a device's field map or options, or the catalogue, changed:
        targets resolved before then may be stale."""
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
    #: radio metadata and battery levels (LoRaWAN uplinks, status events)
    health: list[HealthRow] = field(default_factory=list)
    #: stored readings of earlier batches whose QC flag this batch worsened (a spike
    #: is only seen once the next reading exists): their new flags, to write back
    revised: qc.SeriesTail = field(default_factory=qc.SeriesTail.empty)
    #: per message: 'stored', 'partial' (some records quarantined), 'quarantined',
    #: 'status', 'retained_replay' (a time-less retained message, not stored again),
    #: 'ignored' (held only fields declared not worth keeping)
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


class BatchPreparer:
    """Turns messages into a `PreparedBatch`; holds no state between batches but caches."""

    def __init__(
        self,
        registry: Registry,
        limits: Limits,
        topic_prefix: str,
        *,
        quality_control: bool = True,
        profiles: Iterable[str] = PROFILE_NAMES,
        timezone: str = "Europe/Oslo",
    ) -> None:
        self.registry = registry
        self.limits = limits
        self.prefix = topic_prefix
        self.router = Router(profiles, topic_prefix)
        #: the zone of a device's local clock when the device names none
        self.timezone: tzinfo = ZoneInfo(timezone)
        # QARTOD tests beyond gross range need each series' recent readings: the tail
        # of the previous batch, kept here (the preparer is single-threaded).
        self.quality_control = quality_control
        self._qc_configs: dict[int, qc.QcConfig] = {}
        self._qc_table: qc.QcTable | None = None
        self._qc_tail: qc.SeriesTail | None = None
        self.targets = TargetResolver(
            registry.metric,
            registry.aliases,
            registry.series,
            self._new_series,
            many_series=registry.many_series,
        )
        self._generation = registry.generation
        # devices' options with the default time zone filled in (Tasmota's local clocks)
        self._local: dict[str, DeviceOptions] = {}

    @classmethod
    def from_settings(cls, registry: Registry, settings: Settings) -> BatchPreparer:
        """The preparer ingest runs with these settings (limits, profiles, QC)."""
        return cls(
            registry,
            Limits.of(settings),
            settings.mqtt_topic_prefix,
            quality_control=settings.ingest_qc,
            profiles=settings.ingest_profile_names,
            timezone=settings.timezone,
        )

    def _new_series(self, series_id: int, metric: Metric) -> None:
        if series_id not in self._qc_configs:
            self._qc_configs[series_id] = qc.default_config(
                metric.key, metric.min_value, metric.max_value, metric.qc
            )
            self._qc_table = None

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
                    qc.default_config(metric.key, metric.min_value, metric.max_value, metric.qc),
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
        resolver = self.targets
        targets = resolver.cache
        generation = self.registry.generation
        if len(targets) > TARGET_CACHE_LIMIT or generation != self._generation:
            # between batches only: readings of this batch point into the table
            resolver.clear()
            self._local.clear()
            self._generation = generation
        route_of = self.router.route
        device_of_id = self.registry.device

        for index, message in enumerate(messages):
            if message.mid:
                delivered += 1
            route = route_of(message.topic)
            if route is None:
                self._reject(
                    batch,
                    message,
                    None,
                    "bad_topic",
                    f"topic {short(message.topic)!r} is no enabled profile's "
                    f"({self.router.describe()})",
                )
                continue
            if len(message.payload) > self.limits.max_payload_bytes:
                self._reject(
                    batch,
                    message,
                    route.keys[0] if route.direct else None,
                    "oversized",
                    f"payload of {len(message.payload)} bytes exceeds the limit of "
                    f"{self.limits.max_payload_bytes}; first {OVERSIZED_KEEP_BYTES} "
                    f"bytes kept, sha256 {hashlib.sha256(message.payload).hexdigest()}",
                    message.payload[:OVERSIZED_KEEP_BYTES],
                )
                continue
            # the common case inline (a registered, active device of the route's own
            # profile, named by the topic); `_device` does the rest and the quarantine
            device = device_of_id(route.keys[0]) if route.direct else None
            if device is None or device.status != "active" or device.profile != route.profile.name:
                device = self._device(batch, message, route)
                if device is None:
                    continue
            device_id = device.id
            if route.kind == "status":
                self._status(batch, message, device_id, route)
                continue
            if route.kind != "telemetry":
                self._reject(
                    batch,
                    message,
                    device_id,
                    "bad_topic",
                    f"unknown message kind {route.detail!r} (expected telemetry or status)",
                )
                continue
            options = device.options
            if options.timezone is None and route.profile.local_time:
                options = self._local_options(device)
            try:
                decoded = route.profile.decode(message.payload, message.received, route, options)
                if decoded.anchored:
                    if message.retain:
                        # replayed from the retained store: when it was measured is unknown
                        batch.outcomes["retained_replay"] += 1
                        continue
                    if anchors is not None and message.mid:
                        anchor = anchors.anchor(message, delivered)
                        if anchor is not None:
                            decoded = route.profile.decode(message.payload, anchor, route, options)
            except DecodeError as exc:
                self._reject(batch, message, device_id, exc.reason, exc.detail)
                continue

            problems: dict[str, list[str]] = {}
            for rejected in decoded.rejected:
                if rejected.name is not None and rejected.reason == "non_numeric":
                    declared = resolver.field(device.fields, rejected.name)
                    if declared is not None and declared.ignored:
                        continue  # a text field declared as not worth keeping
                problems.setdefault(rejected.reason, []).append(
                    f"record {rejected.position}: {rejected.detail}"
                )
            stored = 0
            battery: tuple[float, float | None, float | None] | None = None  # time, V, %
            for reading in decoded.readings:
                key = (device_id, reading.name, reading.unit, reading.is_sum)
                target = targets.get(key)
                # unknown, or a rejection that has expired: resolve (again)
                if target is None or (
                    target.__class__ is not int
                    and isinstance(target, Rejection)
                    and target.until < resolver.clock()
                ):
                    target = resolver.resolve(
                        device_id, device.fields, reading.name, reading.unit, reading.is_sum
                    )
                if target.__class__ is int:
                    times.append(reading.time)
                    raw.append(reading.value)
                    tids.append(target)
                    origin.append(index)
                    stored += 1
                    continue
                if isinstance(target, Rejection):
                    problems.setdefault(target.reason, []).append(target.detail)
                elif isinstance(target, HealthTarget):
                    battery = (reading.time, *target.battery(reading.value))
                elif isinstance(target, Ignored):
                    continue
            healthy = decoded.health is not None or battery is not None
            if healthy:
                self._health(batch, device_id, decoded, battery)
            for reason, details in problems.items():
                self._reject(
                    batch, message, device_id, reason, "; ".join(details)[:1000], count=False
                )
            if stored:
                device_of[index] = device_id
                if problems:
                    batch.partial.add(index)
            elif not problems:
                # nothing but health, or fields declared as not worth keeping
                batch.outcomes["health" if healthy else "ignored"] += 1
                continue
            outcome = "partial" if problems and stored else "stored" if stored else "quarantined"
            batch.outcomes[outcome] += 1

        resolver.flush()  # the series first seen in this batch, created together
        batch.delivered = delivered
        if anchors is not None:
            batch.remembered = anchors.remembered()
        if times:
            self._finish(batch, messages, device_of, times, raw, tids, origin, history=history)
        return batch

    def _device(self, batch: PreparedBatch, message: Message, route: Route) -> DeviceEntry | None:
        """The registered, active device the route names, of the route's profile; else
        the message goes to quarantine and None."""
        registry = self.registry
        profile = route.profile
        if route.direct:
            device_id: str | None = route.keys[0]
        else:
            device_id = None
            for key in route.keys:
                device_id = registry.lookup(profile.name, key)
                if device_id is not None:
                    break
            if device_id is None:
                self._reject(
                    batch,
                    message,
                    None,
                    "unknown_device",
                    f"no device is registered with {profile.name} {profile.key_label} "
                    f"{short(route.keys[0], 80)!r} (smartby devices add --profile "
                    f"{profile.name} --topic …)",
                )
                return None
        device = registry.device(device_id)  # type: ignore[arg-type]
        if device is None:
            self._reject(
                batch,
                message,
                device_id,
                "unknown_device",
                f"device {device_id!r} is not registered",
            )
            return None
        if device.status != "active":
            detail = f"device {device.id!r} is {device.status}"
            self._reject(batch, message, device.id, "device_disabled", detail)
            return None
        if device.profile != profile.name:
            self._reject(
                batch,
                message,
                device.id,
                "wrong_profile",
                f"device {device.id!r} speaks {device.profile}, not {profile.name}",
            )
            return None
        return device

    def _local_options(self, device: DeviceEntry) -> DeviceOptions:
        options = self._local.get(device.id)
        if options is None:
            options = replace(device.options, timezone=self.timezone)
            self._local[device.id] = options
        return options

    @staticmethod
    def _health(
        batch: PreparedBatch,
        device_id: str,
        decoded: DecodeResult,
        battery: tuple[float, float | None, float | None] | None,
    ) -> None:
        """One health row per message: the uplink's radio metadata and the battery level
        its payload held."""
        radio = decoded.health
        if radio is not None:
            row = HealthRow(
                device_id,
                radio.time,
                radio.rssi,
                radio.snr,
                radio.gateways,
                radio.battery_v,
                radio.battery_pct,
            )
        else:
            assert battery is not None
            row = HealthRow(device_id, battery[0])
        if battery is not None:
            row.battery_v, row.battery_pct = battery[1], battery[2]
        batch.health.append(row)
        level = row.battery_v if row.battery_v is not None else row.battery_pct
        _merge_status(batch, device_id, row.time, None, level, row.rssi)

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
        series_of, params = self.targets.arrays()
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

    def _status(self, batch: PreparedBatch, message: Message, device_id: str, route: Route) -> None:
        """What a status topic says (online/offline, battery, RSSI, a LoRaWAN status
        event's battery level), by the device's profile."""
        try:
            report = route.profile.status(message.payload, message.received)
        except DecodeError as exc:
            self._reject(batch, message, device_id, exc.reason, exc.detail)
            return
        _merge_status(
            batch, device_id, message.received, report.online, report.battery, report.rssi
        )
        radio = report.health
        if radio is not None:
            batch.health.append(
                HealthRow(
                    device_id,
                    radio.time,
                    radio.rssi,
                    radio.snr,
                    radio.gateways,
                    radio.battery_v,
                    radio.battery_pct,
                )
            )
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


def _merge_status(
    batch: PreparedBatch,
    device_id: str,
    seen: float,
    online: bool | None,
    battery: float | None,
    rssi: float | None,
) -> None:
    """Keep the latest status per device; what a later message leaves unsaid, an
    earlier one of the batch may still say."""
    previous = batch.statuses.get(device_id)
    if previous is None:
        batch.statuses[device_id] = DeviceStatus(online, battery, rssi, seen)
        return
    if seen >= previous.seen:
        previous.online = online if online is not None else previous.online
        previous.battery = battery if battery is not None else previous.battery
        previous.rssi = rssi if rssi is not None else previous.rssi
        previous.seen = seen
    else:
        previous.online = previous.online if previous.online is not None else online
        previous.battery = previous.battery if previous.battery is not None else battery
        previous.rssi = previous.rssi if previous.rssi is not None else rssi
