"""Writing a prepared batch in one transaction, and finding devices and series.

Readings go in by binary COPY (NumPy-encoded, `db.pgcopy`).  COPY cannot skip
duplicates, and a redelivered MQTT message brings readings that are already stored,
so the common case COPYs straight into ``readings`` inside a savepoint, and only
when the unique key objects does the batch go the slower way: COPY into a staging
table, then ``INSERT … ON CONFLICT DO NOTHING``.  Duplicates are absorbed by the
key, never by luck.  Only on that slower way can a reading meet a stored one, so only
there are conflicts looked for: a reading whose (series, time) is stored with another
value, or comes twice in the batch with two values, is not stored; the message goes
to quarantine as ``conflicting_value`` with both values.  The first value committed
stays; an identical one is a duplicate, as before.

The same transaction counts the messages committed under the worker's client id,
remembers its time-less messages (`ingest.redelivery`) and announces the stored
readings to live listeners (`db.stream`: one NOTIFY per batch, delivered at commit).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import TupleRow

from core.rollups import LatestTimes
from db.catalogue import Metric, load_catalogue
from db.pgcopy import Column, encode_rows
from db.rollups import (
    create_staging,
    merge_partials,
    reading_arrays,
    recompute_hours,
)
from db.stream import notify_readings
from ingest.pipeline import PreparedBatch, QuarantineRow, RecentReadings
from ingest.redelivery import REUSE_WINDOW, RecordedDelivery, latest_deliveries

log = logging.getLogger(__name__)

READING_COLUMNS = (
    Column("time", "timestamptz"),
    Column("series_id", "int4"),
    Column("value", "float8"),
    Column("quality", "int2"),
)


#: count a batch's messages with a packet id under the worker's client id
_COUNT_MESSAGES = (
    "INSERT INTO ingest_sessions AS s (client_id, committed) VALUES (%(client)s, %(delivered)s)"
    " ON CONFLICT (client_id) DO UPDATE SET committed = s.committed + EXCLUDED.committed"
    " RETURNING committed"
)
#: ... remember its time-less messages, and forget those that no redelivery can match
_COUNT_AND_REMEMBER = (
    "WITH counted AS (" + _COUNT_MESSAGES + "),"
    " expired AS (DELETE FROM ingest_deliveries d USING counted WHERE d.client_id = %(client)s"
    " AND d.last_seq <= counted.committed - %(window)s)"
    " INSERT INTO ingest_deliveries"
    " (client_id, last_seq, delivered, packet_ids, ordinals, digests, anchors)"
    " SELECT %(client)s, committed, %(delivered)s, %(ids)s, %(ordinals)s, %(digests)s,"
    " %(anchors)s FROM counted"
)


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: int  # readings newly stored
    duplicates: int  # readings already there (redelivery)
    quarantined: int
    revised: int = 0  # stored readings whose QC flag was worsened by this batch
    #: quarantine rows the write added: messages with a conflicting value
    conflicts: tuple[QuarantineRow, ...] = ()
    #: how those messages' outcomes changed (e.g. stored -1, quarantined +1)
    outcome_changes: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Conflict:
    """A reading of the batch whose (series, time) holds another value."""

    reading: int  # index in the batch
    stored: float  # the value that stays


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True, slots=True)
class NewRows:
    """Readings a write actually stored (all of the batch, unless some were redelivered)."""

    series_ids: npt.NDArray[np.int32]
    times_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int16]

    @classmethod
    def of(cls, batch: PreparedBatch) -> NewRows:
        return cls(batch.series_ids, batch.times_us, batch.values, batch.quality)

    @classmethod
    def empty(cls) -> NewRows:
        return cls(
            np.empty(0, np.int32),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.int16),
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _conflict_quarantine(
    conn: psycopg.Connection[TupleRow], batch: PreparedBatch, conflicts: Sequence[Conflict]
) -> tuple[tuple[QuarantineRow, ...], Counter[str]]:
    """One ``conflicting_value`` row per message, naming each conflicting reading's
    metric, time, the value that stays and the one received; and how the messages'
    outcomes change (a message none of whose readings stays is quarantined)."""
    series_ids = sorted({int(batch.series_ids[c.reading]) for c in conflicts})
    metrics: dict[int, tuple[str, str]] = {
        int(sid): (key, unit)
        for sid, key, unit in conn.execute(
            "SELECT s.id, s.metric, m.unit_symbol FROM series s JOIN metrics m"
            " ON m.key = s.metric WHERE s.id = ANY(%s::int4[])",
            (series_ids,),
        )
    }
    details: dict[int, list[str]] = {}
    for conflict in sorted(conflicts, key=lambda c: c.reading):
        i = conflict.reading
        key, unit = metrics.get(int(batch.series_ids[i]), (f"series {batch.series_ids[i]}", ""))
        when = _EPOCH + timedelta(microseconds=int(batch.times_us[i]))
        details.setdefault(int(batch.origins[i]), []).append(
            f"{key} at {when.isoformat()}: stored {conflict.stored!r}, received "
            f"{float(batch.values[i])!r} {unit}".rstrip()
        )
    readings_of = np.bincount(batch.origins, minlength=len(batch.messages))
    rows: list[QuarantineRow] = []
    changes: Counter[str] = Counter()
    for index, lines in details.items():
        message = batch.messages[index]
        rows.append(
            QuarantineRow(
                message.received,
                message.topic,
                batch.devices.get(index),
                "conflicting_value",
                "; ".join(lines)[:1000],
                message.payload,
            )
        )
        was = "partial" if index in batch.partial else "stored"
        now = "quarantined" if len(lines) == readings_of[index] else "partial"
        if now != was:
            changes[was] -= 1
            changes[now] += 1
    return tuple(rows), changes


class BatchWriter:
    """Owns the write connection; `write` is one transaction or an exception."""

    def __init__(
        self, url: str, application_name: str = "smartby-ingest", *, rollups: bool = True
    ) -> None:
        self.url = url
        #: merge rollup partials in the readings' transaction (off only to measure)
        self.rollups = rollups
        #: each series' latest reading merged: which series report often enough to
        #: get 1-minute rollup rows (`core.rollups.minute_readings`)
        self.latest = LatestTimes()
        self.application_name = application_name
        self.conn: psycopg.Connection[TupleRow] | None = None

    def _connection(self) -> psycopg.Connection[TupleRow]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = psycopg.connect(
                self.url, application_name=self.application_name, connect_timeout=5
            )
            self.conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS readings_staging"
                " (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            create_staging(self.conn)
            self.conn.commit()
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def write(self, batch: PreparedBatch) -> WriteResult:
        conn = self._connection()
        try:
            with conn.transaction():
                new_rows, conflicts = self._readings(conn, batch)
                inserted = len(new_rows.values)
                if self.rollups and inserted:
                    self._rollups(conn, new_rows)
                if inserted:
                    notify_readings(conn, new_rows.series_ids, new_rows.times_us)
                revised = self._revisions(conn, batch) if len(batch.revised) else 0
                conflict_rows, changes = (
                    _conflict_quarantine(conn, batch, conflicts) if conflicts else ((), Counter())
                )
                self._quarantine(conn, [*batch.quarantine, *conflict_rows])
                self._devices(conn, batch)
                self._session(conn, batch)
        except BaseException:
            # A broken connection is replaced on the next call.
            if conn.broken:
                self.close()
            raise
        return WriteResult(
            inserted,
            batch.reading_count - inserted - len(conflicts),
            len(batch.quarantine) + len(conflict_rows),
            revised,
            conflict_rows,
            changes,
        )

    def _readings(
        self, conn: psycopg.Connection[TupleRow], batch: PreparedBatch
    ) -> tuple[NewRows, list[Conflict]]:
        """COPY the batch; return the rows that were new (rollups must not count a
        redelivered reading twice) and the readings that conflict."""
        if batch.reading_count == 0:
            return NewRows.of(batch), []
        # (Sorting rows into key order first was measured: no faster.)
        data = encode_rows(
            READING_COLUMNS, [batch.times_us, batch.series_ids, batch.values, batch.quality]
        )
        try:
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(
                    "COPY readings (time, series_id, value, quality) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.write(data)
            return NewRows.of(batch), []
        except psycopg.errors.UniqueViolation:
            pass  # some readings are stored already, or come twice: absorb them below
        return self._readings_with_repeats(conn, batch)

    @staticmethod
    def _readings_with_repeats(
        conn: psycopg.Connection[TupleRow], batch: PreparedBatch
    ) -> tuple[NewRows, list[Conflict]]:
        """The slower way, for a batch some of whose keys are stored already or repeat
        within it: the first reading of each key in batch order goes through staging
        and ``ON CONFLICT DO NOTHING``; a key found stored with another value, and a
        repeat whose value differs from the one that stays, is a conflict."""
        series, times, values = batch.series_ids, batch.times_us, batch.values
        count = len(values)
        order = np.lexsort((times, series))  # stable: a key's readings stay in batch order
        repeat = np.zeros(count, dtype=bool)
        repeat[1:] = (series[order][1:] == series[order][:-1]) & (
            times[order][1:] == times[order][:-1]
        )
        starts = np.flatnonzero(~repeat)
        leader = np.empty(count, dtype=np.intp)  # each reading's first reading of its key
        leader[order] = order[starts[np.cumsum(~repeat) - 1]]
        firsts = np.flatnonzero(leader == np.arange(count))
        data = encode_rows(
            READING_COLUMNS,
            [times[firsts], series[firsts], values[firsts], batch.quality[firsts]],
        )
        with conn.cursor() as cur:
            with cur.copy(
                "COPY readings_staging (time, series_id, value, quality) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.write(data)
            cur.execute(
                "INSERT INTO readings (time, series_id, value, quality)"
                " SELECT time, series_id, value, quality FROM readings_staging"
                " ON CONFLICT (series_id, time) DO NOTHING"
                " RETURNING series_id,"
                " (extract(epoch FROM time) * 1000000)::int8, value, quality"
            )
            rows = cur.fetchall()
            clashes: dict[tuple[int, int], float] = {}
            if len(rows) < len(firsts):
                # keys that were stored already: those with another value conflict (the
                # rows just inserted match their own staging rows)
                cur.execute(
                    "SELECT s.series_id, (extract(epoch FROM s.time) * 1000000)::int8, r.value"
                    " FROM readings_staging s JOIN readings r"
                    " ON r.series_id = s.series_id AND r.time = s.time"
                    " WHERE r.value <> s.value"
                )
                clashes = {(int(sid), int(t)): float(v) for sid, t, v in cur.fetchall()}
            # the staging rows go at commit (ON COMMIT DELETE ROWS)
        conflicts: list[Conflict] = []
        if clashes:
            for i in firsts.tolist():
                stored = clashes.get((int(series[i]), int(times[i])))
                if stored is not None:
                    conflicts.append(Conflict(i, stored))
        for i in np.flatnonzero(leader != np.arange(count)).tolist():
            first = int(leader[i])
            stored = clashes.get((int(series[first]), int(times[first])), float(values[first]))
            if float(values[i]) != stored:
                conflicts.append(Conflict(i, stored))
        new_rows = NewRows(*reading_arrays(rows)) if rows else NewRows.empty()
        return new_rows, conflicts

    def _revisions(self, conn: psycopg.Connection[TupleRow], batch: PreparedBatch) -> int:
        """Write back the worse flags QC gave earlier readings, and recompute the
        rollup buckets they sit in (a reading turned FAIL leaves them).  Returns how
        many stored readings changed."""
        revised = batch.revised
        changed = conn.execute(
            "UPDATE readings r SET quality = v.q"
            " FROM unnest(%s::int4[], %s::int8[], %s::int2[]) AS v(s, t, q)"
            " WHERE r.series_id = v.s"
            " AND r.time = 'epoch'::timestamptz + v.t * interval '1 microsecond'"
            " AND r.quality <> v.q"
            " RETURNING r.series_id, (extract(epoch FROM r.time) * 1000000)::int8",
            (
                revised.series_ids.tolist(),
                revised.times_us.tolist(),
                revised.quality.tolist(),
            ),
        ).fetchall()
        if changed and self.rollups:
            columns = list(zip(*changed, strict=True))
            recompute_hours(
                conn, np.asarray(columns[0], np.int32), np.asarray(columns[1], np.int64)
            )
        return len(changed)

    def _rollups(self, conn: psycopg.Connection[TupleRow], rows: NewRows) -> None:
        """Merge the batch's partial aggregates into ``rollups`` (hours and days; minutes
        of series that report often), in the same transaction as the readings: a
        reading is in a rollup exactly when it is stored.  The upsert mirrors
        `core.rollups.merge` (see its docstring)."""
        merge_partials(
            conn,
            rows.series_ids,
            rows.times_us,
            rows.values,
            rows.quality,
            latest=self.latest,
        )

    @staticmethod
    def _quarantine(conn: psycopg.Connection[TupleRow], rows: Sequence[QuarantineRow]) -> None:
        if not rows:
            return
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY quarantine (received_at, topic, device_id, reason, detail, payload)"
                " FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(
                    (
                        _ts(row.received),
                        row.topic,
                        row.device_id,
                        row.reason,
                        row.detail,
                        row.payload,
                    )
                )

    @staticmethod
    def _session(conn: psycopg.Connection[TupleRow], batch: PreparedBatch) -> None:
        """Count the batch's messages under the client id, and remember its time-less
        ones (`ingest.redelivery`)."""
        session = batch.session
        if session is None or not batch.delivered:
            return
        params: dict[str, object] = {"client": session.client_id, "delivered": batch.delivered}
        remembered = batch.remembered
        if remembered is None:
            conn.execute(_COUNT_MESSAGES, params)
            return
        params |= {
            "window": REUSE_WINDOW,
            "ids": remembered.packet_ids,
            "ordinals": remembered.ordinals,
            "digests": remembered.digests,
            "anchors": remembered.anchors,
        }
        conn.execute(_COUNT_AND_REMEMBER, params)

    @staticmethod
    def _devices(conn: psycopg.Connection[TupleRow], batch: PreparedBatch) -> None:
        if batch.last_seen:
            conn.execute(
                """UPDATE devices d SET last_seen = GREATEST(d.last_seen, v.seen)
                   FROM unnest(%s::text[], %s::timestamptz[]) AS v(id, seen)
                   WHERE d.id = v.id""",
                (list(batch.last_seen), [_ts(s) for s in batch.last_seen.values()]),
            )
        if batch.statuses:
            ids = list(batch.statuses)
            states = list(batch.statuses.values())
            conn.execute(
                """UPDATE devices d SET
                       online = COALESCE(v.online, d.online),
                       battery = COALESCE(v.battery, d.battery),
                       rssi = COALESCE(v.rssi, d.rssi),
                       last_seen = GREATEST(d.last_seen, v.seen),
                       updated_at = now()
                   FROM unnest(%s::text[], %s::boolean[], %s::float8[], %s::float8[],
                               %s::timestamptz[]) AS v(id, online, battery, rssi, seen)
                   WHERE d.id = v.id""",
                (
                    ids,
                    [s.online for s in states],
                    [s.battery for s in states],
                    [s.rssi for s in states],
                    [_ts(s.seen) for s in states],
                ),
            )


class DatabaseRegistry:
    """Devices, metrics and series from the database, cached for the hot path.

    A device nobody registered is remembered as unknown for ``negative_ttl`` seconds,
    so a flood from a rogue topic costs one query, not one per message; a device
    registered meanwhile is found after that.  Series are created on first use by an
    idempotent upsert (several workers may race to create the same one).
    """

    def __init__(
        self,
        url: str,
        *,
        positive_ttl: float = 60.0,
        negative_ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.positive_ttl = positive_ttl
        self.negative_ttl = negative_ttl
        self.clock = clock
        self.conn: psycopg.Connection[TupleRow] | None = None
        self._devices: dict[str, tuple[str | None, float]] = {}
        self._series: dict[tuple[str, str], int] = {}
        self._metrics: dict[str, Metric] = {}

    def _connection(self) -> psycopg.Connection[TupleRow]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = psycopg.connect(
                self.url,
                autocommit=True,
                application_name="smartby-ingest-registry",
                connect_timeout=5,
            )
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def load(self) -> None:
        """Warm the caches: the catalogue, every device and every series."""
        conn = self._connection()
        self._metrics = load_catalogue(conn)
        now = self.clock()
        for device_id, status in conn.execute("SELECT id, status FROM devices"):
            self._devices[device_id] = (status, now + self.positive_ttl)
        for series_id, device_id, metric in conn.execute(
            "SELECT id, device_id, metric FROM series"
        ):
            self._series[(device_id, metric)] = series_id

    def recent_readings(self, per_series: int = 2, within_s: float = 86_400) -> RecentReadings:
        """Each series' last ``per_series`` readings of the last ``within_s`` seconds
        (one index probe per series: the primary key is (series_id, time))."""
        rows = (
            self._connection()
            .execute(
                "SELECT s.id, s.metric, (extract(epoch FROM r.time) * 1000000)::int8,"
                " r.value, r.quality FROM series s CROSS JOIN LATERAL ("
                "  SELECT time, value, quality FROM readings"
                "  WHERE series_id = s.id AND time > now() - make_interval(secs => %s)"
                "  ORDER BY time DESC LIMIT %s) r",
                (within_s, per_series),
            )
            .fetchall()
        )
        columns: list[tuple[object, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 5
        return RecentReadings(
            np.asarray(columns[0], np.int32),
            np.asarray(columns[1], dtype=str),
            np.asarray(columns[2], np.int64),
            np.asarray(columns[3], np.float64),
            np.asarray(columns[4], np.int16),
        )

    def recorded_deliveries(
        self, client_id: str, packet_ids: list[int]
    ) -> dict[int, RecordedDelivery]:
        """What committed time-less messages left under these packet ids of the client
        id's session, with how many messages it committed since each."""
        if not packet_ids:
            return {}
        rows = (
            self._connection()
            .execute(
                "SELECT s.committed, d.last_seq, d.delivered, d.packet_ids, d.ordinals,"
                " d.digests, d.anchors"
                " FROM ingest_sessions s JOIN ingest_deliveries d USING (client_id)"
                " WHERE s.client_id = %s AND d.last_seq > s.committed - %s",
                (client_id, REUSE_WINDOW),
            )
            .fetchall()
        )
        if not rows:
            return {}
        return latest_deliveries(
            (
                (int(r[1]), int(r[2]), bytes(r[3]), bytes(r[4]), bytes(r[5]), bytes(r[6]))
                for r in rows
            ),
            int(rows[0][0]),
            packet_ids,
        )

    def forget_deliveries(self, client_id: str) -> None:
        """The broker started the client id's session afresh: its packet ids start again
        at 1 and name none of the messages remembered under them."""
        self._connection().execute(
            "DELETE FROM ingest_deliveries WHERE client_id = %s", (client_id,)
        )

    def device_status(self, device_id: str) -> str | None:
        cached = self._devices.get(device_id)
        now = self.clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        row = (
            self._connection()
            .execute("SELECT status FROM devices WHERE id = %s", (device_id,))
            .fetchone()
        )
        status = row[0] if row else None
        ttl = self.positive_ttl if status is not None else self.negative_ttl
        if len(self._devices) > 100_000:  # bound the memory a topic flood can take
            self._devices.clear()
        self._devices[device_id] = (status, now + ttl)
        return status

    def metric(self, key: str) -> Metric | None:
        if not self._metrics:
            self._metrics = load_catalogue(self._connection())
        return self._metrics.get(key)

    def series(self, device_id: str, metric: Metric) -> int:
        key = (device_id, metric.key)
        found = self._series.get(key)
        if found is not None:
            return found
        row = (
            self._connection()
            .execute(
                """WITH created AS (
                   INSERT INTO series (device_id, metric) VALUES (%s, %s)
                   ON CONFLICT (device_id, metric) DO NOTHING RETURNING id)
               SELECT id FROM created
               UNION ALL SELECT id FROM series WHERE device_id = %s AND metric = %s""",
                (device_id, metric.key, device_id, metric.key),
            )
            .fetchone()
        )
        assert row is not None, f"series {device_id}/{metric.key} neither created nor found"
        self._series[key] = int(row[0])
        return int(row[0])
