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

A large batch is written over two connections, its readings split by series (even
ids on the first, odd on the second), so that two PostgreSQL backends COPY and merge
rollups at once: for a stream of packs the database's work on one connection was what
bounded one worker (py-spy: the committer thread spent ~70 % of its time waiting on
the COPY; bench/ingest.py scenario b).  The protocol that keeps a reading stored once:
- a series' readings and rollup rows are only ever touched by one of the two
  connections (the same split in every worker), so they never wait on each other;
- the second connection commits first, and the first commits only after it, holding
  everything else of the batch: its readings, quarantine, device updates and the
  session's bookkeeping.  The batch is acknowledged only after both commits.  If the
  first then fails, nothing is acknowledged, the broker redelivers, and the second
  half's readings come back as duplicates, absorbed by the key (their rollups are not
  merged twice: only new rows are) — the path a redelivery always takes;
- a batch with time-less messages to remember (`ingest.redelivery`) or with QC
  revisions of stored readings is written on one connection: a time-less reading
  committed without the remembered time that a redelivery must reuse would be stored
  twice;
- the first connection waits on the second in the application, where PostgreSQL's
  deadlock detector cannot see it, so the second must never wait on the first: it
  queues the local days of its rollups for the indicator job itself, and the first
  queues its own only after the second committed; and the second runs with a
  ``lock_timeout``, after which the first connection writes that half itself
  (TimescaleDB creating a chunk is one lock the first may hold).

The same transaction counts the messages committed under the worker's client id,
remembers its time-less messages (`ingest.redelivery`), stores device health (a
LoRaWAN uplink's radio metadata, battery levels), whose key absorbs redelivery too, and
announces the stored readings to live listeners (`db.stream`: one NOTIFY per batch,
delivered at commit).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import TupleRow

from core.rollups import LatestTimes
from db.pgcopy import Column, encode_rows
from db.rollups import (
    MARK_DAYS_SQL,
    create_staging,
    merge_partials,
    reading_arrays,
    recompute_hours,
)
from db.storage import readings_chunk_spans
from db.stream import notify_readings
from ingest.pipeline import PreparedBatch, QuarantineRow
from ingest.redelivery import REUSE_WINDOW
from ingest.registry import DatabaseRegistry

__all__ = ["BatchWriter", "DatabaseRegistry", "WriteResult"]

log = logging.getLogger(__name__)

READING_COLUMNS = (
    Column("time", "timestamptz"),
    Column("series_id", "int4"),
    Column("value", "float8"),
    Column("quality", "int2"),
)


#: a batch with at least this many readings is split over two connections (below it,
#: a second round of statements costs more than it saves)
SPLIT_MIN_READINGS = 4096
#: how long the second connection waits for a lock before the first takes its half
SECOND_LOCK_TIMEOUT = "1s"

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


def _part(batch: PreparedBatch, rows: npt.NDArray[np.bool_]) -> PreparedBatch:
    """The batch's readings where ``rows``, for one connection of a split write (what
    `BatchWriter._readings` reads of it: the columns; indexes into it are the part's)."""
    return replace(
        batch,
        times_us=batch.times_us[rows],
        series_ids=batch.series_ids[rows],
        values=batch.values[rows],
        quality=batch.quality[rows],
        # a batch built without its messages (the write path alone, in bench/) has none
        origins=batch.origins[rows] if len(batch.origins) == len(rows) else batch.origins,
    )


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


@dataclass(frozen=True, slots=True)
class _Stored:
    """What one connection stored of a batch, or of its half in a split write: how
    many readings were new, and which conflict (indexes into what it was given)."""

    inserted: int
    conflicts: list[Conflict]


class BatchWriter:
    """Owns the write connections; `write` is one transaction (two for a large batch,
    see the module docstring) or an exception."""

    def __init__(
        self,
        url: str,
        application_name: str = "smartby-ingest",
        *,
        rollups: bool = True,
        split: int | None = SPLIT_MIN_READINGS,
    ) -> None:
        self.url = url
        #: merge rollup partials in the readings' transaction (off only to measure)
        self.rollups = rollups
        #: each series' latest reading merged: which series report often enough to
        #: get 1-minute rollup rows (`core.rollups.minute_readings`)
        self.latest = LatestTimes()
        self.application_name = application_name
        self.conn: psycopg.Connection[TupleRow] | None = None
        #: batches of at least this many readings go over two connections (None: never)
        self.split_min_readings = split
        self._second: BatchWriter | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock_timeout: str | None = None  # the second connection's (docstring)
        #: the readings chunks known to exist, (start, end) µs rows; None: not looked
        #: up since a chunk may have been created
        self._chunks: npt.NDArray[np.int64] | None = None
        self._hypertable = True

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
            if self._lock_timeout is not None:
                self.conn.execute(
                    "SELECT set_config('lock_timeout', %s, false)", (self._lock_timeout,)
                )
            self.conn.commit()
        return self.conn

    def close(self) -> None:
        """Close the connections (and end the second one's thread); the next `write`
        opens them again."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self._second is not None:
            self._second.close()

    def _split(self, batch: PreparedBatch) -> npt.NDArray[np.bool_] | None:
        """The readings the second connection writes (odd series ids), or None when
        the batch goes on one connection (module docstring)."""
        if (
            self.split_min_readings is None
            or batch.reading_count < self.split_min_readings
            or batch.remembered is not None
            or len(batch.revised)
        ):
            return None
        odd = (batch.series_ids & 1).astype(bool)
        if odd.all() or not odd.any() or not self._in_chunks(batch.times_us):
            return None
        return odd

    def _in_chunks(self, times_us: npt.NDArray[np.int64]) -> bool:
        """Whether every reading falls in a chunk that exists: a batch that creates a
        chunk is written on one connection (creating it locks the hypertable until
        commit, and the second connection must not wait on the first)."""
        if not self._hypertable:
            return True
        if self._chunks is None:
            conn = self._connection()
            spans = readings_chunk_spans(conn)
            conn.commit()
            if spans is None:
                self._hypertable = False
                return True
            self._chunks = spans
        spans = self._chunks
        if len(spans):
            at = np.searchsorted(spans[:, 0], times_us, side="right") - 1
            if ((at >= 0) & (times_us < spans[np.maximum(at, 0), 1])).all():
                return True
        self._chunks = None  # this batch creates one: look again next time
        return False

    def _write_half(self, part: PreparedBatch) -> _Stored:
        """The second connection's transaction: the half's readings, their rollups and
        days, committed (runs on the writer's own thread)."""
        conn = self._connection()
        try:
            with conn.transaction():
                return self._store(conn, part)
        except BaseException:
            if conn.broken:
                self.close()
            raise

    def _store(
        self, conn: psycopg.Connection[TupleRow], batch: PreparedBatch, *, mark_days: bool = True
    ) -> _Stored:
        """The readings of ``batch`` (a whole batch or one half), their rollups and the
        live listeners' notice, in ``conn``'s transaction."""
        new_rows, conflicts = self._readings(conn, batch)
        inserted = len(new_rows.values)
        if self.rollups and inserted:
            self._rollups(conn, new_rows, mark_days=mark_days)
        if inserted:
            notify_readings(conn, new_rows.series_ids, new_rows.times_us)
        return _Stored(inserted, conflicts)

    def _start_half(self, batch: PreparedBatch, odd: npt.NDArray[np.bool_]) -> Future[_Stored]:
        if self._second is None:
            self._second = BatchWriter(
                self.url,
                f"{self.application_name}-2",
                rollups=self.rollups,
                split=None,
            )
            self._second._lock_timeout = SECOND_LOCK_TIMEOUT
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="ingest-writer-2")
        return self._pool.submit(self._second._write_half, _part(batch, odd))

    def write(self, batch: PreparedBatch) -> WriteResult:
        conn = self._connection()
        odd = self._split(batch)
        half: Future[_Stored] | None = None
        try:
            with conn.transaction():
                if odd is not None:
                    half = self._start_half(batch, odd)
                    even = np.flatnonzero(~odd)
                    mine = _part(batch, ~odd)
                else:
                    mine = batch
                stored = self._store(conn, mine, mark_days=half is None)
                inserted, conflicts = stored.inserted, stored.conflicts
                if half is not None:
                    assert odd is not None
                    conflicts = [Conflict(int(even[c.reading]), c.stored) for c in conflicts]
                    their, conflicts_there = self._half_result(conn, half, batch, odd, inserted)
                    half = None
                    inserted += their
                    conflicts += conflicts_there
                revised = self._revisions(conn, batch) if len(batch.revised) else 0
                conflict_rows, changes = (
                    _conflict_quarantine(conn, batch, conflicts) if conflicts else ((), Counter())
                )
                self._quarantine(conn, [*batch.quarantine, *conflict_rows])
                self._devices(conn, batch)
                self._health(conn, batch)
                self._session(conn, batch)
        except BaseException:
            if half is not None:
                # the second connection's outcome does not matter now (nothing is
                # acknowledged), but it must be over before the batch is tried again
                half.exception()
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

    def _half_result(
        self,
        conn: psycopg.Connection[TupleRow],
        half: Future[_Stored],
        batch: PreparedBatch,
        odd: npt.NDArray[np.bool_],
        inserted_here: int,
    ) -> tuple[int, list[Conflict]]:
        """Wait for the second connection's commit, then queue this half's days
        (module docstring): (readings it stored, its conflicts as indexes into the
        batch).  If it gave up waiting for a lock, its transaction rolled back and this
        connection writes that half itself."""
        at = np.flatnonzero(odd)
        try:
            done = half.result()
        except psycopg.errors.LockNotAvailable as exc:
            log.info("the second write connection waited too long (%s); one takes both", exc)
            self._chunks = None  # a chunk dropped since, and created again?
            done = None
        if self.rollups and inserted_here:
            conn.execute(MARK_DAYS_SQL)
        if done is None:
            # this half's staged rows are merged (and stored): not again
            conn.execute("DELETE FROM rollups_staging")
            conn.execute("DELETE FROM readings_staging")
            done = self._store(conn, _part(batch, odd))
        return done.inserted, [Conflict(int(at[c.reading]), c.stored) for c in done.conflicts]

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

    def _rollups(
        self, conn: psycopg.Connection[TupleRow], rows: NewRows, *, mark_days: bool = True
    ) -> None:
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
            mark_days=mark_days,
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
    def _health(conn: psycopg.Connection[TupleRow], batch: PreparedBatch) -> None:
        """Radio metadata and battery levels; a redelivered uplink's row is there already."""
        rows = batch.health
        if not rows:
            return
        conn.execute(
            """INSERT INTO device_health
                   (time, device_id, rssi, snr, gateways, battery_v, battery_pct)
               SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::float8[],
                                    %s::float8[], %s::int2[], %s::float8[], %s::float8[])
               ON CONFLICT (device_id, time) DO NOTHING""",
            (
                [_ts(r.time) for r in rows],
                [r.device_id for r in rows],
                [r.rssi for r in rows],
                [r.snr for r in rows],
                [r.gateways for r in rows],
                [r.battery_v for r in rows],
                [r.battery_pct for r in rows],
            ),
        )

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
