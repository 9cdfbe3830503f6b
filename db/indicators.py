"""The indicator tables (migration 0005), recomputed one local day at a time.

Ingest marks the local days its batches touched (`db.rollups.MARK_DAYS_SQL`,
in the batch's transaction); `update_pending` takes those days out of
``indicator_days_pending`` and recomputes every indicator of each, in one
transaction per day, so readers see a day switch from old to new at once and a day
marked again meanwhile is simply done again.  ``FOR UPDATE SKIP LOCKED`` lets
several workers run the job side by side on different days.

A whole day is recomputed rather than patched: the day is the unit of the daily
tables, and recomputing cannot drift the way incremental arithmetic on ratios would.
A day need not fit in memory, though: one busy site can write 1.5 M readings a day,
and reading them whole took the worker to 963 MB (issue 11).  The air quality index
reads the hourly rollups (a row per series and hour, with the exact sums and counts
of its readings).  Energy and traffic need the readings themselves (the interval
between consecutive readings of a meter; per interval, the product of two series of
a counter), so each meter and counter is streamed through a server-side cursor,
`CHUNK_ROWS` at a time, into sums that add up across chunks
(`core.indicators.merge_energy_totals`, `merge_traffic_sums`): the job's memory is
bounded by the chunk, not by the day (bench/indicators.py).

The arithmetic is `core.indicators`; this module only moves arrays in and rows out.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import LiteralString
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


_BUCKET_COLUMNS: tuple[str, ...] = ind.TrafficBuckets.__slots__


def _concatenate(parts: list[ind.TrafficBuckets]) -> ind.TrafficBuckets:
    """Several counters' buckets (dataclasses of aligned arrays) as one."""
    columns = (np.concatenate([getattr(p, name) for p in parts]) for name in _BUCKET_COLUMNS)
    return ind.TrafficBuckets(*columns)


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


# -- streaming a day --------------------------------------------------------------------

#: Rows fetched per round trip when a day's readings are streamed.  The job holds one
#: chunk (as Python rows, then NumPy arrays) and per-hour sums, never the whole day:
#: 100,000 rows are ~15 MB of Python objects at their peak, and a day of 1.5 M
#: readings at one site then stays within the 300 MB the worker may use (issue 11;
#: bench/indicators.py), where fetching it whole took ~950 MB.
CHUNK_ROWS = 100_000

#: the columns of a streamed series: time (µs since the epoch) and value
_TIME_VALUE = np.dtype([("time", np.int64), ("value", np.float64)])


def _chunks(
    conn: psycopg.Connection[TupleRow],
    query: LiteralString,
    params: Mapping[str, object],
    dtype: np.dtype[np.void],
    chunk_rows: int,
) -> Iterator[npt.NDArray[np.void]]:
    """A query's rows as structured arrays of at most ``chunk_rows`` rows, through a
    server-side cursor (PostgreSQL docs, DECLARE: rows are produced as FETCH asks for
    them), so neither the client nor libpq ever holds more than one chunk.  Needs the
    day's transaction; every column must be non-NULL (NaN stands for no value)."""
    with conn.cursor("indicator_stream", binary=True) as cur:
        cur.execute(query, params)
        while rows := cur.fetchmany(chunk_rows):
            yield np.array(rows, dtype=dtype)
            del rows  # before the next FETCH, so two chunks never coexist


# -- energy ------------------------------------------------------------------------------

# The meters of each building: the series of active energy devices at a site.
_ENERGY_METERS: LiteralString = """
    SELECT s.id, s.metric, d.site_id
    FROM series s JOIN devices d ON d.id = s.device_id
    WHERE d.kind = 'energy' AND d.site_id IS NOT NULL AND d.status = 'active'
      AND s.metric IN ('energy', 'power')
    ORDER BY s.id
"""

# One meter's readings in the day, in time order (the primary key's order: an index
# range scan, no sort) ...
_METER_DAY: LiteralString = """
    SELECT (extract(epoch FROM time) * 1000000)::int8, value FROM readings
    WHERE series_id = %(series)s AND time >= %(lo)s AND time < %(hi)s
      AND quality <> %(fail)s
    ORDER BY time
"""
# ... and its last reading before the day and first after it, so the intervals across
# midnight are shared out by time.
_METER_BEFORE: LiteralString = """
    SELECT (extract(epoch FROM time) * 1000000)::int8, value FROM readings
    WHERE series_id = %(series)s AND time < %(lo)s AND time >= %(lo)s - %(reach)s
      AND quality <> %(fail)s
    ORDER BY time DESC LIMIT 1
"""
_METER_AFTER: LiteralString = """
    SELECT (extract(epoch FROM time) * 1000000)::int8, value FROM readings
    WHERE series_id = %(series)s AND time >= %(hi)s AND time < %(hi)s + %(reach)s
      AND quality <> %(fail)s
    ORDER BY time LIMIT 1
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


_NO_TOTALS = ind.merge_energy_totals([])


@dataclass(slots=True)
class _EnergyTotals:
    """A day's energy totals so far, hourly and daily, merged chunk by chunk (a few
    rows per building and hour, whatever the size of the day)."""

    hourly: ind.EnergyTotals = _NO_TOTALS
    daily: ind.EnergyTotals = _NO_TOTALS

    def add(self, intervals: ind.Intervals, tz: str) -> None:
        hourly = ind.energy_totals(intervals, "1h", tz)
        daily = ind.energy_totals(intervals, "1d", tz)
        self.hourly = ind.merge_energy_totals([self.hourly, hourly])
        self.daily = ind.merge_energy_totals([self.daily, daily])


def _stream_meter(
    conn: psycopg.Connection[TupleRow],
    series_id: int,
    site: int,
    is_register: bool,
    params: dict[str, object],
    tz: str,
    chunk_rows: int,
    totals: _EnergyTotals,
) -> bool:
    """Add one meter's consumption in the day to ``totals``, reading it a chunk at a
    time; whether it had any reading to use.

    Consumption is per interval between consecutive readings, so each chunk starts
    with the last reading of the one before (the last with a value: `ind._steps`
    drops NaN, and the interval spans it).  An interval belongs to exactly one chunk,
    and energy totals are sums over intervals, so the chunks' totals add up to the
    day's (`ind.merge_energy_totals`).
    """
    params = params | {"series": series_id}

    def bound(query: LiteralString) -> npt.NDArray[np.void]:
        found = conn.execute(query, params).fetchall()
        return np.array([tuple(r) for r in found], dtype=_TIME_VALUE)

    chunks = itertools.chain(
        [bound(_METER_BEFORE)],
        _chunks(conn, _METER_DAY, params, _TIME_VALUE, chunk_rows),
        [bound(_METER_AFTER)],
    )
    carry = np.empty(0, dtype=_TIME_VALUE)
    found = False
    for chunk in chunks:
        if not len(chunk):
            continue
        found = True
        window = np.concatenate([carry, chunk])
        times, values = window["time"], window["value"]
        series = np.full(len(window), series_id, dtype=np.int64)
        sites = np.full(len(window), site, dtype=np.int64)
        if is_register:
            intervals = ind.consumption_from_register(series, times, values, sites)
        else:
            intervals = ind.consumption_from_power(
                series, times, values, sites, max_gap_s=_POWER_MAX_GAP_S
            )
        totals.add(intervals, tz)
        with_value = np.flatnonzero(~np.isnan(values))
        carry = window[with_value[-1:]]
    return found


def _update_energy(
    conn: psycopg.Connection[TupleRow],
    lo: datetime,
    hi: datetime,
    tz: str,
    grid_factor: float,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[int, int]:
    """kWh per building and hour / day: from the cumulative register where a building
    has one with readings that day (or just before or after it), else from power.
    Returns rows written.  Each meter is streamed in chunks (`_stream_meter`)."""
    conn.execute("DELETE FROM energy_hourly WHERE hour >= %s AND hour < %s", (lo, hi))
    conn.execute("DELETE FROM energy_daily WHERE day_start >= %s AND day_start < %s", (lo, hi))
    meter_ids, metrics, sites = _arrays(conn, _ENERGY_METERS, ())
    if not len(meter_ids):
        return 0, 0
    site_names, site_ids = _codes(sites)
    is_register = metrics.astype(str) == "energy"
    params: dict[str, object] = {"lo": lo, "hi": hi, "fail": FAIL, "reach": _ENERGY_REACH}
    totals = _EnergyTotals()
    # meters per building, to turn covered seconds into a share of the bucket
    meters = np.zeros(len(site_names))
    # registers first: a building whose registers have readings uses only them
    for i in np.concatenate([np.flatnonzero(is_register), np.flatnonzero(~is_register)]):
        site = int(site_ids[i])
        if not is_register[i] and meters[site] > 0:
            continue  # the building's register covers it
        used = _stream_meter(
            conn,
            int(meter_ids[i]),
            site,
            bool(is_register[i]),
            params,
            tz,
            chunk_rows,
            totals,
        )
        meters[site] += int(used)
    lo_us, hi_us = epoch_us(lo), epoch_us(hi)
    hourly = totals.hourly
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
    daily = totals.daily
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

# The active counters (a device's series are its metrics).
_TRAFFIC_COUNTERS: LiteralString = """
    SELECT d.id, array_agg(s.id ORDER BY s.id)
    FROM devices d JOIN series s ON s.device_id = d.id
    WHERE d.kind = 'traffic' AND d.status = 'active'
      AND s.metric IN ('vehicle_count', 'heavy_vehicle_count', 'speed')
    GROUP BY d.id ORDER BY d.id
"""

# One row per interval of one counter, in time order, the three metrics side by side
# (NaN for one not reported, so every column has a value).
_COUNTER_DAY: LiteralString = """
    SELECT (extract(epoch FROM r.time) * 1000000)::int8,
           coalesce(max(r.value) FILTER (WHERE s.metric = 'vehicle_count'), 'NaN'),
           coalesce(max(r.value) FILTER (WHERE s.metric = 'heavy_vehicle_count'), 'NaN'),
           coalesce(max(r.value) FILTER (WHERE s.metric = 'speed'), 'NaN')
    FROM readings r JOIN series s ON s.id = r.series_id
    WHERE r.series_id = ANY(%(series)s)
      AND r.time >= %(lo)s AND r.time < %(hi)s AND r.quality <> %(fail)s
    GROUP BY r.time ORDER BY r.time
"""
_COUNTS = np.dtype(
    [("time", np.int64), ("vehicles", np.float64), ("heavy", np.float64), ("speed", np.float64)]
)
#: a counter's readings just outside the day, within a day of it (index probes of the
#: readings key), for a day whose own readings cannot tell its interval
_COUNTER_NEIGHBOURS: LiteralString = """
    SELECT (SELECT (extract(epoch FROM max(r.time)) * 1000000)::int8 FROM readings r
            WHERE r.series_id = ANY(%(series)s) AND r.time < %(lo)s
              AND r.time >= %(lo)s - interval '1 day' AND r.quality <> %(fail)s),
           (SELECT (extract(epoch FROM min(r.time)) * 1000000)::int8 FROM readings r
            WHERE r.series_id = ANY(%(series)s) AND r.time >= %(hi)s
              AND r.time < %(hi)s + interval '1 day' AND r.quality <> %(fail)s)
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


def _interval_s(steps: Mapping[int, int]) -> int | None:
    """A counter's reporting interval: the commonest spacing of its readings (whole
    seconds, the shorter on a tie), snapped to a divisor of the hour; None when it
    cannot be told."""
    if not steps:
        return None
    common = min(steps, key=lambda step: (-steps[step], step))
    return common if common in _INTERVALS_S else None


def _stream_counter(
    conn: psycopg.Connection[TupleRow],
    counter: int,
    series: list[int],
    params: dict[str, object],
    chunk_rows: int,
) -> tuple[ind.TrafficSums, int | None]:
    """One counter's hourly sums of the day, read a chunk at a time, and its reporting
    interval (None when no interval that divides the hour can be told).

    The interval is only known at the end of the day (the commonest spacing of all its
    readings), so each chunk adds to interval-free sums (`ind.traffic_sums`; the
    spacing across each chunk boundary is counted too), and the caller finishes the
    day once (`ind.finish_traffic`).
    """
    sums = ind.merge_traffic_sums([])
    # spacings in whole seconds and how often each occurs: at most one key per second
    # of the day, however many readings
    steps: Counter[int] = Counter()
    last: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
    first: int | None = None  # the day's first count
    for chunk in _chunks(conn, _COUNTER_DAY, params | {"series": series}, _COUNTS, chunk_rows):
        times = chunk["time"]
        if first is None and len(times):
            first = int(times[0])
        # rows are distinct times in order (GROUP BY r.time ORDER BY r.time)
        spacing = np.diff(np.concatenate([last, times])) // US_PER_S
        values, counts = np.unique(spacing, return_counts=True)
        steps.update(dict(zip(values.tolist(), counts.tolist(), strict=True)))
        last = times[-1:]
        part = ind.traffic_sums(
            np.full(len(chunk), counter, dtype=np.int64),
            times,  # counts are stamped at the start of their interval
            chunk["vehicles"],
            chunk["heavy"],
            chunk["speed"],
            bucket_s=3600,
        )
        sums = ind.merge_traffic_sums([sums, part])
    interval = _interval_s(steps)
    if interval is None and first is not None:
        # A day with a single count (the first or last day of a dataset, a counter put
        # up late in the day) has no spacing of its own: the spacing to the counter's
        # readings just before and just after the day tells its interval as well.
        before, after = conn.execute(
            _COUNTER_NEIGHBOURS, params | {"series": series}
        ).fetchone() or (None, None)
        if before is not None:
            steps[(first - int(before)) // US_PER_S] += 1
        if after is not None:
            steps[(int(after) - int(last[0])) // US_PER_S] += 1
        interval = _interval_s(steps)
    return sums, interval


def _update_traffic(
    conn: psycopg.Connection[TupleRow],
    lo: datetime,
    hi: datetime,
    tz: str,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[int, int, list[str]]:
    """Hourly and daily volume, mean speed and heavy share per counter.  Counts are
    stamped at the start of their interval (as the simulated and most real counters'
    aggregate records are); only aggregates of an hour and a day are written, above
    the 15-minute privacy floor.  Each counter is streamed in chunks
    (`_stream_counter`)."""
    conn.execute("DELETE FROM traffic_hourly WHERE hour >= %s AND hour < %s", (lo, hi))
    conn.execute("DELETE FROM traffic_daily WHERE day_start >= %s AND day_start < %s", (lo, hi))
    counters = conn.execute(_TRAFFIC_COUNTERS).fetchall()
    params: dict[str, object] = {"lo": lo, "hi": hi, "fail": FAIL}
    names: list[str] = []
    skipped: list[str] = []
    hourly_parts: list[ind.TrafficBuckets] = []
    for device, series in counters:
        sums, interval = _stream_counter(conn, len(names), list(series), params, chunk_rows)
        if not len(sums):
            continue  # no readings that day
        if interval is None:
            skipped.append(str(device))
            continue
        names.append(str(device))
        hourly_parts.append(ind.finish_traffic(sums, interval_s=interval, bucket_s=3600))
    if not hourly_parts:
        return 0, 0, skipped
    hourly = _concatenate(hourly_parts)
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


def update_day(
    conn: psycopg.Connection[TupleRow],
    day: datetime,
    settings: Settings,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> DayUpdate:
    """Recompute every indicator of the local day starting at ``day`` (a local
    midnight); call inside a transaction.  Readings are streamed ``chunk_rows`` at a
    time (`CHUNK_ROWS`); the result does not depend on it."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    tz = settings.timezone
    lo_us = epoch_us(day)
    hi_us = int(next_bucket_starts(np.array([lo_us], np.int64), "1d", tz)[0])
    lo, hi = from_epoch_us(lo_us), from_epoch_us(hi_us)
    update = DayUpdate(day)
    update.aqi_rows = _update_aqi(conn, lo, hi)
    notify_aqi_day(conn, lo, hi)  # heard at commit by the API's live stream
    update.energy_days, update.energy_hours = _update_energy(
        conn, lo, hi, tz, settings.grid_factor_g_per_kwh, chunk_rows
    )
    update.traffic_hours, update.traffic_days, update.skipped = _update_traffic(
        conn, lo, hi, tz, chunk_rows
    )
    if update.skipped:
        log.warning(
            "traffic counters with no interval that divides the hour, left out on %s: %s",
            _local_dates(np.array([lo_us]), tz)[0],
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
    chunk_rows: int = CHUNK_ROWS,
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
                update = update_day(conn, row[0], settings, chunk_rows=chunk_rows)
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
