"""The indicator tables (migration 0005), recomputed one local day at a time.

Ingest marks the local days its batches touched (`db.rollups.MARK_DAYS_SQL`,
in the batch's transaction); `update_pending` takes those days out of
``indicator_days_pending`` and recomputes every indicator of each, in one
transaction per day, so readers see a day switch from old to new at once and a day
marked again meanwhile is simply done again.  ``FOR UPDATE SKIP LOCKED`` lets
several workers run the job side by side on different days.

A whole day is recomputed rather than patched: its inputs are small (for Narvik, a
few tens of thousands of readings), the day is the unit of the daily tables, and
recomputing cannot drift the way incremental arithmetic on ratios would.

The arithmetic is `core.indicators`; this module only moves arrays in and rows out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import LiteralString, TypeVar
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import TupleRow

from core import indicators as ind
from core.qc import FAIL
from core.rollups import (
    US_PER_S,
    bucket_starts,
    epoch_us,
    from_epoch_us,
    local_days,
    next_bucket_starts,
)
from core.settings import Settings
from db.rollups import queue_days
from db.stream import notify_aqi_day

log = logging.getLogger(__name__)

#: A counter's reporting interval must divide the hour (so no count straddles two
#: hourly buckets); the interval is read off the data and snapped to one of these.
_INTERVALS_S = (60, 120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800, 3600)


@dataclass(slots=True)
class DayUpdate:
    """What one day's recomputation wrote."""

    day: datetime
    aqi_rows: int = 0
    energy_hours: int = 0
    energy_days: int = 0
    traffic_hours: int = 0
    traffic_days: int = 0
    skipped: list[str] = field(default_factory=list)


def _local_dates(day_starts: npt.NDArray[np.int64], tz: str) -> list[date]:
    zone = ZoneInfo(tz)
    return [from_epoch_us(d).astimezone(zone).date() for d in day_starts.tolist()]


def _arrays(
    conn: psycopg.Connection[TupleRow],
    query: LiteralString,
    params: Sequence[object] | Mapping[str, object],
) -> list[npt.NDArray[np.generic]]:
    """A query's columns as NumPy arrays (text columns as object arrays)."""
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(query, params).fetchall()
        width = len(cur.description or ())
    if not rows:
        return [np.empty(0) for _ in range(width)]
    return [np.asarray(column) for column in zip(*rows, strict=True)]


def _codes(labels: npt.NDArray[np.generic]) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.int64]]:
    """Distinct labels and each row's index into them (indicators work on integer ids)."""
    distinct, inverse = np.unique(labels.astype(str), return_inverse=True)
    return distinct, inverse.astype(np.int64).reshape(-1)


def _nan_to_none(values: npt.NDArray[np.float64]) -> list[float | None]:
    """A float column for SQL: NaN (no value) becomes NULL."""
    return [None if np.isnan(x) else float(x) for x in values.tolist()]


_Columns = TypeVar("_Columns", ind.Intervals, ind.TrafficBuckets)


def _concatenate(kind: type[_Columns], parts: list[_Columns]) -> _Columns:
    """Several results of one indicator function (dataclasses of aligned arrays) as one."""
    return kind(*(np.concatenate([getattr(p, name) for p in parts]) for name in kind.__slots__))


# -- air quality -------------------------------------------------------------------------

# Hourly means of each station's pollutants, from the 1-hour rollups, for the hours
# whose readings cover at least 75 % of the hour (the EEA's validity rule for hourly
# values).  A series' reporting interval is not registered, so it is read off the
# day's hours: the median spacing of readings within an hour; a series with one
# reading an hour (a reference monitor's hourly mean) covers its hour by itself.
_AQI_MEANS: LiteralString = """
    WITH hours AS (
        SELECT d.site_id, s.metric, r.series_id, r.bucket, r.count, r.sum,
               extract(epoch FROM r.last_time - r.first_time) / nullif(r.count - 1, 0)
                   AS spacing_s
        FROM rollups r
        JOIN series s ON s.id = r.series_id
        JOIN devices d ON d.id = s.device_id
        WHERE r.resolution = '1h' AND r.bucket >= %(lo)s AND r.bucket < %(hi)s
          AND s.metric = ANY(%(pollutants)s) AND d.site_id IS NOT NULL
          AND d.status = 'active'
    ), typical AS (
        SELECT series_id,
               coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY spacing_s)
                            FILTER (WHERE spacing_s > 0), 3600) AS interval_s
        FROM hours GROUP BY series_id
    )
    SELECT h.site_id, h.metric, (extract(epoch FROM h.bucket) * 1000000)::int8,
           sum(h.sum) / sum(h.count)
    FROM hours h JOIN typical t USING (series_id)
    WHERE h.count * least(t.interval_s, 3600) >= %(min_coverage)s * 3600
    GROUP BY h.site_id, h.metric, h.bucket
"""

#: the EEA's minimum data coverage of an hourly value
AQI_MIN_COVERAGE = 0.75

_AQI_INSERT: LiteralString = """
    INSERT INTO aqi_hourly (site_id, hour, level, dominant, pm25, pm10, no2, o3, so2)
    SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::int2[], %s::text[],
                         %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[])
"""


def _update_aqi(conn: psycopg.Connection[TupleRow], lo: datetime, hi: datetime) -> int:
    """EEA index per station and hour from the hourly means of the rollups, for hours
    with at least 75 % coverage (`_AQI_MEANS`).

    The rollup mean covers the usable readings (FAIL ones are never in a rollup); two
    instruments at one station measuring the same pollutant are averaged by weight of
    readings.
    """
    conn.execute("DELETE FROM aqi_hourly WHERE hour >= %s AND hour < %s", (lo, hi))
    sites, metrics, hour_column, mean_column = _arrays(
        conn,
        _AQI_MEANS,
        {
            "lo": lo,
            "hi": hi,
            "pollutants": list(ind.POLLUTANTS),
            "min_coverage": AQI_MIN_COVERAGE,
        },
    )
    if not len(sites):
        return 0
    site_names, site_ids = _codes(sites)
    codes = ind.pollutant_codes(metrics.astype(str))
    hours = hour_column.astype(np.int64)
    means = mean_column.astype(np.float64)
    result = ind.station_aqi(site_ids, hours, codes, means)
    found = result.level > 0
    # the means behind each (station, hour), one column per pollutant, for display:
    # result rows are sorted by (station, hour), so each mean's row is a binary search
    table = np.full((len(result.station_id), len(ind.POLLUTANTS)), np.nan)
    keys = np.rec.fromarrays([result.station_id, result.hour])
    row = np.searchsorted(keys, np.rec.fromarrays([site_ids, hours]))
    table[row, codes] = means
    keep = np.flatnonzero(found)
    columns = [
        [str(site_names[i]) for i in result.station_id[keep]],
        [from_epoch_us(h) for h in result.hour[keep]],
        result.level[keep].astype(int).tolist(),
        [ind.POLLUTANTS[c] for c in result.dominant[keep]],
    ]
    for code in range(len(ind.POLLUTANTS)):
        column = table[keep, code]
        columns.append(_nan_to_none(column))
    conn.execute(_AQI_INSERT, tuple(columns))
    return len(keep)


# -- energy ------------------------------------------------------------------------------

# The readings of each building's meters in the day, plus each series' last reading
# before and first after it, so the intervals across midnight are shared out by time.
_ENERGY_READINGS: LiteralString = """
    WITH meters AS (
        SELECT s.id, s.metric, d.site_id
        FROM series s JOIN devices d ON d.id = s.device_id
        WHERE d.kind = 'energy' AND d.site_id IS NOT NULL AND d.status = 'active'
          AND s.metric IN ('energy', 'power')
    ), picked AS (
        SELECT r.series_id, r.time, r.value
        FROM meters m JOIN readings r ON r.series_id = m.id
        WHERE r.time >= %(lo)s AND r.time < %(hi)s AND r.quality <> %(fail)s
        UNION ALL
        SELECT b.* FROM meters m, LATERAL (
            SELECT series_id, time, value FROM readings
            WHERE series_id = m.id AND time < %(lo)s AND time >= %(lo)s - %(reach)s
              AND quality <> %(fail)s
            ORDER BY time DESC LIMIT 1) b
        UNION ALL
        SELECT a.* FROM meters m, LATERAL (
            SELECT series_id, time, value FROM readings
            WHERE series_id = m.id AND time >= %(hi)s AND time < %(hi)s + %(reach)s
              AND quality <> %(fail)s
            ORDER BY time LIMIT 1) a
    )
    SELECT m.site_id, m.metric, p.series_id, (extract(epoch FROM p.time) * 1000000)::int8,
           p.value
    FROM picked p JOIN meters m ON m.id = p.series_id
"""

_ENERGY_HOURLY_INSERT: LiteralString = """
    INSERT INTO energy_hourly (site_id, hour, kwh, co2e_kg, coverage)
    SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::float8[], %s::float8[],
                         %s::float8[])
"""

_ENERGY_DAILY_INSERT: LiteralString = """
    INSERT INTO energy_daily (site_id, day, day_start, kwh, co2e_kg, coverage,
                              grid_factor_g_per_kwh)
    SELECT *, %s FROM unnest(%s::text[], %s::date[], %s::timestamptz[], %s::float8[],
                             %s::float8[], %s::float8[])
"""

#: how far before / after the day to look for the readings that bound its intervals
_ENERGY_REACH = timedelta(hours=6)
#: power readings further apart than this are not integrated across (see indicators)
_POWER_MAX_GAP_S = 900.0


def _update_energy(
    conn: psycopg.Connection[TupleRow],
    lo: datetime,
    hi: datetime,
    tz: str,
    grid_factor: float,
) -> tuple[int, int]:
    """kWh per building and hour / day: from the cumulative register where a building
    has one with readings that day, else from power.  Returns rows written."""
    conn.execute("DELETE FROM energy_hourly WHERE hour >= %s AND hour < %s", (lo, hi))
    conn.execute("DELETE FROM energy_daily WHERE day_start >= %s AND day_start < %s", (lo, hi))
    sites, metrics, series, times, values = _arrays(
        conn,
        _ENERGY_READINGS,
        {"lo": lo, "hi": hi, "fail": FAIL, "reach": _ENERGY_REACH},
    )
    if not len(sites):
        return 0, 0
    site_names, site_ids = _codes(sites)
    series = series.astype(np.int64)
    times = times.astype(np.int64)
    values = values.astype(np.float64)
    is_register = metrics.astype(str) == "energy"
    register_sites = np.unique(site_ids[is_register])
    from_power = ~is_register & ~np.isin(site_ids, register_sites)
    parts = [
        ind.consumption_from_register(
            series[is_register], times[is_register], values[is_register], site_ids[is_register]
        ),
        ind.consumption_from_power(
            series[from_power],
            times[from_power],
            values[from_power],
            site_ids[from_power],
            max_gap_s=_POWER_MAX_GAP_S,
        ),
    ]
    intervals = _concatenate(ind.Intervals, parts)
    # meters per building, to turn covered seconds into a share of the bucket
    used = is_register | from_power
    meters = np.zeros(len(site_names))
    for site in np.unique(site_ids[used]):
        meters[site] = len(np.unique(series[used & (site_ids == site)]))
    lo_us, hi_us = epoch_us(lo), epoch_us(hi)
    hourly = ind.energy_totals(intervals, "1h", tz)
    in_day = (hourly.bucket >= lo_us) & (hourly.bucket < hi_us)
    h_sites = hourly.group_id[in_day]
    h_kwh = hourly.kwh[in_day]
    conn.execute(
        _ENERGY_HOURLY_INSERT,
        (
            [str(site_names[s]) for s in h_sites],
            [from_epoch_us(b) for b in hourly.bucket[in_day]],
            h_kwh.tolist(),
            ind.co2e_kg(h_kwh, grid_factor).tolist(),
            (hourly.covered_s[in_day] / 3600.0 / meters[h_sites]).tolist(),
        ),
    )
    daily = ind.energy_totals(intervals, "1d", tz)
    in_day = daily.bucket == lo_us
    d_sites = daily.group_id[in_day]
    d_kwh = daily.kwh[in_day]
    length_s = (hi_us - lo_us) / US_PER_S
    starts = daily.bucket[in_day]
    conn.execute(
        _ENERGY_DAILY_INSERT,
        (
            grid_factor,
            [str(site_names[s]) for s in d_sites],
            _local_dates(starts, tz),
            [from_epoch_us(b) for b in starts],
            d_kwh.tolist(),
            ind.co2e_kg(d_kwh, grid_factor).tolist(),
            (daily.covered_s[in_day] / length_s / meters[d_sites]).tolist(),
        ),
    )
    return int(in_day.sum()), len(h_sites)


# -- traffic -----------------------------------------------------------------------------

# One row per counter and interval, the three metrics side by side.
_TRAFFIC_READINGS: LiteralString = """
    SELECT d.id, (extract(epoch FROM r.time) * 1000000)::int8,
           max(r.value) FILTER (WHERE s.metric = 'vehicle_count'),
           max(r.value) FILTER (WHERE s.metric = 'heavy_vehicle_count'),
           max(r.value) FILTER (WHERE s.metric = 'speed')
    FROM readings r
    JOIN series s ON s.id = r.series_id
    JOIN devices d ON d.id = s.device_id
    WHERE d.kind = 'traffic' AND d.status = 'active'
      AND s.metric IN ('vehicle_count', 'heavy_vehicle_count', 'speed')
      AND r.time >= %s AND r.time < %s AND r.quality <> %s
    GROUP BY d.id, r.time
"""

_TRAFFIC_HOURLY_INSERT: LiteralString = """
    INSERT INTO traffic_hourly (device_id, site_id, hour, volume, heavy_volume,
                                mean_speed_kmh, heavy_share, coverage)
    SELECT v.device_id, d.site_id, v.hour, v.volume, v.heavy_volume, v.mean_speed,
           v.heavy_share, v.coverage
    FROM unnest(%s::text[], %s::timestamptz[], %s::float8[], %s::float8[], %s::float8[],
                %s::float8[], %s::float8[])
         AS v(device_id, hour, volume, heavy_volume, mean_speed, heavy_share, coverage)
    JOIN devices d ON d.id = v.device_id
"""

_TRAFFIC_DAILY_INSERT: LiteralString = """
    INSERT INTO traffic_daily (device_id, site_id, day, day_start, volume, heavy_volume,
                               mean_speed_kmh, heavy_share, coverage)
    SELECT v.device_id, d.site_id, v.day, v.day_start, v.volume, v.heavy_volume,
           v.mean_speed, v.heavy_share, v.coverage
    FROM unnest(%s::text[], %s::date[], %s::timestamptz[], %s::float8[], %s::float8[],
                %s::float8[], %s::float8[], %s::float8[])
         AS v(device_id, day, day_start, volume, heavy_volume, mean_speed, heavy_share,
              coverage)
    JOIN devices d ON d.id = v.device_id
"""


def _interval_s(times_us: npt.NDArray[np.int64]) -> int | None:
    """A counter's reporting interval: the commonest spacing of its readings, snapped
    to a divisor of the hour; None when it cannot be told."""
    steps = np.diff(np.unique(times_us)) // US_PER_S
    if not len(steps):
        return None
    values, counts = np.unique(steps, return_counts=True)
    common = int(values[np.argmax(counts)])
    return common if common in _INTERVALS_S else None


def _update_traffic(
    conn: psycopg.Connection[TupleRow], lo: datetime, hi: datetime, tz: str
) -> tuple[int, int, list[str]]:
    """Hourly and daily volume, mean speed and heavy share per counter.  Counts are
    stamped at the start of their interval (as the simulated and most real counters'
    aggregate records are); only aggregates of an hour and a day are written, above
    the 15-minute privacy floor."""
    conn.execute("DELETE FROM traffic_hourly WHERE hour >= %s AND hour < %s", (lo, hi))
    conn.execute("DELETE FROM traffic_daily WHERE day_start >= %s AND day_start < %s", (lo, hi))
    devices, times, vehicles, heavy, speed = _arrays(conn, _TRAFFIC_READINGS, (lo, hi, FAIL))
    if not len(devices):
        return 0, 0, []
    names, ids = _codes(devices)
    times = times.astype(np.int64)

    def floats(column: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
        return np.array([np.nan if x is None else x for x in column.tolist()], dtype=np.float64)

    n, h, sp = floats(vehicles), floats(heavy), floats(speed)
    skipped: list[str] = []
    hourly_parts: list[ind.TrafficBuckets] = []
    for device in range(len(names)):
        mine = ids == device
        interval = _interval_s(times[mine])
        if interval is None:
            skipped.append(str(names[device]))
            continue
        hourly_parts.append(
            ind.traffic_buckets(
                ids[mine],
                times[mine],
                n[mine],
                h[mine],
                sp[mine],
                interval_s=interval,
                bucket_s=3600,
                stamped="start",
            )
        )
    if not hourly_parts:
        return 0, 0, skipped
    hourly = _concatenate(ind.TrafficBuckets, hourly_parts)
    with np.errstate(invalid="ignore"):
        heavy_volume = np.where(hourly.heavy_base > 0, hourly.heavy_volume, np.nan)
    conn.execute(
        _TRAFFIC_HOURLY_INSERT,
        (
            [str(names[c]) for c in hourly.counter_id],
            [from_epoch_us(b) for b in hourly.bucket],
            hourly.volume.tolist(),
            _nan_to_none(heavy_volume),
            _nan_to_none(hourly.mean_speed_kmh),
            _nan_to_none(hourly.heavy_share),
            hourly.coverage.tolist(),
        ),
    )
    # the day from its hours: every weight is kept, so the merge is exact
    day = bucket_starts(hourly.bucket, "1d", tz)
    order = np.lexsort((day, hourly.counter_id))
    keys = np.stack([hourly.counter_id[order], day[order]])
    starts = np.flatnonzero(np.concatenate([[True], (keys[:, 1:] != keys[:, :-1]).any(axis=0)]))

    def total(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.add.reduceat(x[order], starts)

    speed_volume = total(hourly.speed_volume)
    speed_sum = total(np.nan_to_num(hourly.mean_speed_kmh) * hourly.speed_volume)
    heavy_sum = total(hourly.heavy_volume)
    heavy_base = total(hourly.heavy_base)
    day_starts = day[order][starts]
    length_s = (next_bucket_starts(day_starts, "1d", tz) - day_starts) / US_PER_S
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_speed = np.where(speed_volume > 0, speed_sum / speed_volume, np.nan)
        share = np.where(heavy_base > 0, heavy_sum / heavy_base, np.nan)
    conn.execute(
        _TRAFFIC_DAILY_INSERT,
        (
            [str(names[c]) for c in hourly.counter_id[order][starts]],
            _local_dates(day_starts, tz),
            [from_epoch_us(d) for d in day_starts],
            total(hourly.volume).tolist(),
            _nan_to_none(np.where(heavy_base > 0, heavy_sum, np.nan)),
            _nan_to_none(mean_speed),
            _nan_to_none(share),
            (total(hourly.coverage) * 3600.0 / length_s).tolist(),
        ),
    )
    return len(hourly.bucket), len(starts), skipped


# -- the job -----------------------------------------------------------------------------


def update_day(conn: psycopg.Connection[TupleRow], day: datetime, settings: Settings) -> DayUpdate:
    """Recompute every indicator of the local day starting at ``day`` (a local
    midnight); call inside a transaction."""
    tz = settings.timezone
    lo_us = epoch_us(day)
    hi_us = int(next_bucket_starts(np.array([lo_us], np.int64), "1d", tz)[0])
    lo, hi = from_epoch_us(lo_us), from_epoch_us(hi_us)
    update = DayUpdate(day)
    update.aqi_rows = _update_aqi(conn, lo, hi)
    notify_aqi_day(conn, lo, hi)  # heard at commit by the API's live stream
    update.energy_days, update.energy_hours = _update_energy(
        conn, lo, hi, tz, settings.grid_factor_g_per_kwh
    )
    update.traffic_hours, update.traffic_days, update.skipped = _update_traffic(conn, lo, hi, tz)
    if update.skipped:
        log.warning(
            "traffic counters with no interval that divides the hour, left out on %s: %s",
            lo.date(),
            ", ".join(update.skipped),
        )
    return update


_TAKE_DAY: LiteralString = """
    DELETE FROM indicator_days_pending
    WHERE day = (SELECT day FROM indicator_days_pending ORDER BY day
                 LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING day
"""


def update_pending(
    conn: psycopg.Connection[TupleRow],
    settings: Settings,
    *,
    max_days: int | None = None,
    progress: Callable[[DayUpdate], None] | None = None,
) -> list[DayUpdate]:
    """Recompute the indicators of every day waiting in ``indicator_days_pending``
    (oldest first; at most ``max_days``), one transaction per day."""
    done: list[DayUpdate] = []
    # No server-side prepared statements: after five runs psycopg would prepare the
    # day's queries, and PostgreSQL's generic plan for them does not know which
    # chunks of the hypertable the day's bounds select.
    threshold, conn.prepare_threshold = conn.prepare_threshold, None
    try:
        while max_days is None or len(done) < max_days:
            with conn.transaction():
                row = conn.execute(_TAKE_DAY).fetchone()
                if row is None:
                    break
                update = update_day(conn, row[0], settings)
            done.append(update)
            if progress is not None:
                progress(update)
    finally:
        conn.prepare_threshold = threshold
    return done


def mark_days(conn: psycopg.Connection[TupleRow], start: datetime, end: datetime, tz: str) -> int:
    """Queue every local day touching [start, end) for recomputation (after a rebuild,
    a change of grid factor, or to fill the tables for older data)."""
    if end <= start:
        raise ValueError(
            f"the end ({end.isoformat()}) must be after the start ({start.isoformat()})"
        )
    days = local_days(epoch_us(start), epoch_us(end), tz)
    queue_days(conn, days)
    return len(days)
