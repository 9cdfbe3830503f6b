"""Devices, their profiles, metrics, aliases and series from the database, cached for the
ingest hot path.

A device nobody registered is remembered as unknown for ``negative_ttl`` seconds, so a
flood from a rogue topic costs one query, not one per message; a device registered
meanwhile is found after that.  A known device is looked at again every
``positive_ttl`` seconds, so a disabled device or a changed field map takes effect
within a minute.  The catalogue (metrics and field aliases) is read again when a
name is not found in it, at most every ``negative_ttl`` seconds, so a metric added
with ``smartby metrics add`` is picked up without restarting ingest.  Whenever a device's
field map or options or the catalogue changed, `generation` moves on, and the
preparer forgets the targets it resolved with the old ones.  Series are created on
first use by an idempotent upsert (several workers may race to create the same one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import TupleRow

from core.profiles import BindingError, DeviceOptions, FieldTarget
from core.profiles.binding import check_binding
from db.catalogue import Metric, load_aliases, load_catalogue
from ingest.pipeline import DeviceEntry, RecentReadings
from ingest.redelivery import REUSE_WINDOW, RecordedDelivery, latest_deliveries

log = logging.getLogger(__name__)

#: bound on the caches a topic flood could grow
_CACHE_LIMIT = 100_000


def device_entry(row: tuple[Any, ...]) -> DeviceEntry:
    """A `DeviceEntry` from a row of (id, status, profile, external_id, field_map,
    profile_options).  A map or an option that no
    longer passes the checks (edited by hand in the database) is left out, loudly."""
    device_id, status, profile, key, field_map, options = row
    options = options or {}
    try:
        binding = check_binding(
            profile,
            key,
            field_map or {},
            options.get("timezone"),
            options.get("numeric_strings"),
        )
    except BindingError as exc:
        log.error("device %s: ignoring its field map and options: %s", device_id, exc)
        return DeviceEntry(device_id, status, profile)
    zone = None
    if binding.timezone is not None:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(binding.timezone)
    return DeviceEntry(
        device_id,
        status,
        profile,
        DeviceOptions(timezone=zone, numeric_strings=binding.numeric_strings),
        binding.fields,
    )


class DatabaseRegistry:
    """The `ingest.pipeline.Registry` of a running worker."""

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
        self._devices: dict[str, tuple[DeviceEntry | None, float]] = {}
        self._keys: dict[tuple[str, str], tuple[str | None, float]] = {}
        self._series: dict[tuple[str, str], int] = {}
        self._metrics: dict[str, Metric] = {}
        self._aliases: dict[str, FieldTarget] = {}
        self._catalogue_read = -float("inf")
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

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
        self._read_catalogue(conn)
        now = self.clock()
        for row in conn.execute(
            "SELECT id, status, profile, external_id, field_map, profile_options FROM devices"
        ):
            entry = device_entry(row)
            self._devices[entry.id] = (entry, now + self.positive_ttl)
            if row[3] is not None:
                self._keys[(entry.profile, row[3])] = (entry.id, now + self.positive_ttl)
        for series_id, device_id, metric in conn.execute(
            "SELECT id, device_id, metric FROM series"
        ):
            self._series[(device_id, metric)] = series_id

    # ------------------------------------------------------------------- catalogue

    def _read_catalogue(self, conn: psycopg.Connection[TupleRow]) -> None:
        metrics, aliases = load_catalogue(conn), load_aliases(conn)
        if (metrics, aliases) != (self._metrics, self._aliases):
            if self._metrics:
                self._generation += 1
            self._metrics, self._aliases = metrics, aliases
        self._catalogue_read = self.clock()

    def _refresh_catalogue(self) -> None:
        """Read the catalogue again, unless that was done within ``negative_ttl``."""
        if self.clock() - self._catalogue_read >= self.negative_ttl:
            self._read_catalogue(self._connection())

    def metric(self, key: str) -> Metric | None:
        if not self._metrics:
            self._read_catalogue(self._connection())
        found = self._metrics.get(key)
        if found is None:
            self._refresh_catalogue()
            found = self._metrics.get(key)
        return found

    def aliases(self) -> Mapping[str, FieldTarget]:
        if not self._metrics:
            self._read_catalogue(self._connection())
        return self._aliases

    # --------------------------------------------------------------------- devices

    def device(self, device_id: str) -> DeviceEntry | None:
        cached = self._devices.get(device_id)
        now = self.clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        row = (
            self._connection()
            .execute(
                "SELECT id, status, profile, external_id, field_map, profile_options"
                " FROM devices WHERE id = %s",
                (device_id,),
            )
            .fetchone()
        )
        entry = device_entry(row) if row else None
        if cached is not None and cached[0] is not None and entry is not None:
            old = cached[0]
            if (old.profile, old.options, old.fields) != (
                entry.profile,
                entry.options,
                entry.fields,
            ):
                self._generation += 1
        ttl = self.positive_ttl if entry is not None else self.negative_ttl
        if len(self._devices) > _CACHE_LIMIT:  # bound the memory a topic flood can take
            self._devices.clear()
        self._devices[device_id] = (entry, now + ttl)
        return entry

    def device_status(self, device_id: str) -> str | None:
        """'active', 'disabled', or None for a device nobody registered."""
        entry = self.device(device_id)
        return entry.status if entry is not None else None

    def lookup(self, profile: str, key: str) -> str | None:
        cached = self._keys.get((profile, key))
        now = self.clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        row = (
            self._connection()
            .execute(
                "SELECT id FROM devices WHERE profile = %s AND external_id = %s", (profile, key)
            )
            .fetchone()
        )
        device_id = str(row[0]) if row else None
        ttl = self.positive_ttl if device_id is not None else self.negative_ttl
        if len(self._keys) > _CACHE_LIMIT:
            self._keys.clear()
        self._keys[(profile, key)] = (device_id, now + ttl)
        return device_id

    # ------------------------------------------------------- history and redelivery

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

    # ---------------------------------------------------------------------- series

    def many_series(self, pairs: Sequence[tuple[str, Metric]]) -> list[int]:
        """The series ids of these device × metric pairs, those missing created in one
        statement: a fleet's first batch creates its series in one round trip, not one
        each (a round trip a series was ~10 % of a 30,000-pack run, bench/ingest.py)."""
        missing = sorted({(d, m.key) for d, m in pairs if (d, m.key) not in self._series})
        if missing:
            devices, metrics = [d for d, _ in missing], [m for _, m in missing]
            rows = (
                self._connection()
                .execute(
                    """WITH wanted AS (
                       SELECT * FROM unnest(%s::text[], %s::text[]) AS w(device_id, metric)),
                   created AS (
                       INSERT INTO series (device_id, metric) SELECT * FROM wanted
                       ON CONFLICT (device_id, metric) DO NOTHING
                       RETURNING id, device_id, metric)
                   SELECT id, device_id, metric FROM created
                   UNION ALL SELECT s.id, s.device_id, s.metric
                   FROM series s JOIN wanted w USING (device_id, metric)""",
                    (devices, metrics),
                )
                .fetchall()
            )
            for series_id, device_id, key in rows:
                self._series[(str(device_id), str(key))] = int(series_id)
        # one another worker created after this statement's snapshot: the one-by-one way
        return [self.series(d, m) for d, m in pairs]

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
