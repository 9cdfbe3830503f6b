"""Environmental indicators from readings and rollups: air quality index, energy, traffic.

All functions work on whole arrays of many stations / buildings / counters at once.
Readings passed in should be the usable ones (QC flag not FAIL); what to do with
suspect readings is the caller's choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from core.rollups import HOUR_US, US_PER_S, bucket_starts, fixed_width_in_utc

Ids = npt.NDArray[np.integer]
Times = npt.NDArray[np.int64]
Values = npt.NDArray[np.float64]


def _groups(*keys: npt.NDArray[np.integer]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The order sorting rows by the keys (first key most significant) and the
    positions where each distinct key combination starts in that order."""
    order = np.lexsort(keys[::-1])
    if len(order) == 0:
        return order, np.empty(0, dtype=np.intp)
    boundary = np.zeros(len(order) - 1, dtype=bool)
    for key in keys:
        k = key[order]
        boundary |= k[1:] != k[:-1]
    return order, np.flatnonzero(np.concatenate([[True], boundary]))


# -- European Air Quality Index -----------------------------------------------------------

#: Pollutant codes used by `station_aqi`: the index of the metric key here.  The order
#: is also the tie-break for the dominant pollutant (particles first).
POLLUTANTS: tuple[str, ...] = ("pm25", "pm10", "no2", "o3", "so2")

#: EEA European Air Quality Index (2024 revision) band lower bounds in µg/m³, of
#: Fair, Moderate, Poor, Very poor and Extremely poor; below the first is Good.
AQI_BANDS: Mapping[str, tuple[float, float, float, float, float]] = {
    "pm25": (5.0, 15.0, 50.0, 90.0, 140.0),
    "pm10": (15.0, 45.0, 120.0, 195.0, 270.0),
    "no2": (10.0, 25.0, 60.0, 100.0, 150.0),
    "o3": (60.0, 100.0, 120.0, 160.0, 180.0),
    "so2": (20.0, 40.0, 125.0, 190.0, 275.0),
}
AQI_LEVEL_NAMES: tuple[str, ...] = (
    "Good",
    "Fair",
    "Moderate",
    "Poor",
    "Very poor",
    "Extremely poor",
)
#: the level of a missing concentration: no index
NO_INDEX = 0
_BAND_TABLE = np.array([AQI_BANDS[p] for p in POLLUTANTS], dtype=np.float64)


def aqi_levels(pollutant: str, hourly_means: Values) -> npt.NDArray[np.int8]:
    """EEA index level (1 Good … 6 Extremely poor) of each hourly mean concentration.

    The band bounds are lower bounds: a concentration equal to one is in the higher
    band.  A NaN mean has no index (0).  Follows DESIGN.md in using hourly means for
    every pollutant; some versions of the EEA index use a 24-hour running mean for
    PM2.5 and PM10 instead, which the caller can pass here just the same.
    """
    bands = AQI_BANDS.get(pollutant)
    if bands is None:
        raise ValueError(f"no EEA index bands for {pollutant!r}; known: {POLLUTANTS}")
    means = np.asarray(hourly_means, dtype=np.float64)
    levels = (1 + np.searchsorted(np.array(bands), means, side="right")).astype(np.int8)
    levels[np.isnan(means)] = NO_INDEX
    return levels


def pollutant_codes(keys: Sequence[str] | npt.NDArray[np.str_]) -> npt.NDArray[np.int8]:
    """Metric keys → pollutant codes (index in `POLLUTANTS`)."""
    distinct, inverse = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
    unknown = [str(k) for k in distinct if str(k) not in POLLUTANTS]
    if unknown:
        raise ValueError(f"not an index pollutant: {unknown}")
    table = np.array([POLLUTANTS.index(str(k)) for k in distinct], dtype=np.int8)
    return table[inverse].reshape(-1) if len(distinct) else np.empty(0, dtype=np.int8)


@dataclass(frozen=True, slots=True)
class StationAqi:
    """One row per (station, hour), sorted by station then hour."""

    station_id: npt.NDArray[np.int64]
    hour: Times
    level: npt.NDArray[np.int8]  # 1 … 6; 0 when no pollutant had a mean
    dominant: npt.NDArray[np.int8]  # pollutant code (index in POLLUTANTS); -1 when none


def station_aqi(
    station_ids: Ids,
    hour_buckets: Times,
    pollutant_ids: npt.NDArray[np.integer],
    means: Values,
) -> StationAqi:
    """The station index per hour: the worst level of its pollutants (EEA: "the
    overall index is the worst of the individual pollutant indices"), and which
    pollutant set it.  Ties go to the pollutant listed first in `POLLUTANTS`
    (PM2.5, PM10, NO2, O3, SO2).  Rows are one hourly mean per station, hour and
    pollutant (NaN for none); the caller decides which means are valid enough
    (e.g. rollup coverage ≥ 75 %).
    """
    stations = np.asarray(station_ids, dtype=np.int64)
    hours = np.asarray(hour_buckets, dtype=np.int64)
    codes = np.asarray(pollutant_ids, dtype=np.int64)
    values = np.asarray(means, dtype=np.float64)
    if not len(stations) == len(hours) == len(codes) == len(values):
        raise ValueError("station_ids, hour_buckets, pollutant_ids and means differ in length")
    if codes.size and (codes.min() < 0 or codes.max() >= len(POLLUTANTS)):
        raise ValueError(f"pollutant codes must be 0…{len(POLLUTANTS) - 1}")
    bands = _BAND_TABLE[codes]  # one row of five lower bounds per mean
    level = 1 + (values[:, None] >= bands).sum(axis=1)
    # one sortable score: level first, then the tie-break (earlier pollutant wins)
    width = len(POLLUTANTS)
    score = np.where(np.isnan(values), -1, level * width + (width - 1 - codes))
    order, starts = _groups(stations, hours)
    best = np.maximum.reduceat(score[order], starts) if len(order) else score[:0]
    found = best >= 0
    return StationAqi(
        station_id=stations[order][starts],
        hour=hours[order][starts],
        level=np.where(found, best // width, NO_INDEX).astype(np.int8),
        dominant=np.where(found, width - 1 - best % width, -1).astype(np.int8),
    )


# -- Energy ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Intervals:
    """Energy used between consecutive readings of a series, sorted by series and time;
    ``group_id`` is the building (or any grouping) the series belongs to."""

    series_id: npt.NDArray[np.int64]
    group_id: npt.NDArray[np.int64]
    start_us: Times
    end_us: Times
    kwh: Values

    def __len__(self) -> int:
        return len(self.series_id)


def _steps(
    series_ids: Ids, times_us: Times, values: Values, group_ids: Ids | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], Times, Values, npt.NDArray[np.bool_]]:
    """Rows in (series, time) order (NaN values dropped) and which rows continue the
    series of the row before."""
    s = np.asarray(series_ids, dtype=np.int64)
    t = np.asarray(times_us, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    g = s if group_ids is None else np.asarray(group_ids, dtype=np.int64)
    if not len(s) == len(t) == len(v) == len(g):
        raise ValueError("series_ids, times_us, values and group_ids differ in length")
    present = np.flatnonzero(~np.isnan(v))
    order = present[np.lexsort((t[present], s[present]))]
    s, g, t, v = s[order], g[order], t[order], v[order]
    continues = (s[1:] == s[:-1]) & (t[1:] > t[:-1])
    return s, g, t, v, continues


def consumption_from_register(
    series_ids: Ids,
    times_us: Times,
    register_kwh: Values,
    group_ids: Ids | None = None,
    *,
    reset_tolerance_kwh: float = 0.0,
) -> Intervals:
    """kWh per interval between consecutive readings of cumulative energy registers.

    Normally the difference of the registers.  A decrease means the meter was reset
    (DESIGN.md, MQTT contract): the register restarted from 0 at some moment in the
    interval, so the interval's consumption is the new reading itself (what was used
    between the last reading and the reset is unknown and lost; the new reading is
    the best estimate of the rest).  A decrease of at most ``reset_tolerance_kwh`` is
    read jitter, not a reset: zero consumption.  ``group_ids`` (aligned with the
    readings) say which building each series belongs to; the series itself otherwise.
    """
    s, g, t, v, continues = _steps(series_ids, times_us, register_kwh, group_ids)
    step = v[1:] - v[:-1]
    kwh = np.where(step >= 0, step, np.where(step < -reset_tolerance_kwh, v[1:], 0.0))
    return Intervals(
        s[1:][continues], g[1:][continues], t[:-1][continues], t[1:][continues], kwh[continues]
    )


def consumption_from_power(
    series_ids: Ids,
    times_us: Times,
    power_w: Values,
    group_ids: Ids | None = None,
    *,
    max_gap_s: float = 900.0,
) -> Intervals:
    """kWh per interval between consecutive power readings, by the trapezoidal rule.

    No energy is integrated across a gap longer than ``max_gap_s``: what the building
    drew while its meter was silent is unknown, and a straight line through hours
    would invent it (`EnergyTotals.covered_s` shows the hole).  Negative power
    (export) gives negative kWh: the result is net import.
    """
    s, g, t, v, continues = _steps(series_ids, times_us, power_w, group_ids)
    dt_s = (t[1:] - t[:-1]) / US_PER_S
    keep = continues & (dt_s <= max_gap_s)
    kwh = (v[1:] + v[:-1]) / 2 * dt_s / 3.6e6  # W·s → kWh
    return Intervals(s[1:][keep], g[1:][keep], t[:-1][keep], t[1:][keep], kwh[keep])


@dataclass(frozen=True, slots=True)
class EnergyTotals:
    """kWh per group and bucket, sorted by group then bucket."""

    group_id: npt.NDArray[np.int64]
    bucket: Times
    kwh: Values
    #: seconds of the bucket that intervals covered, summed over the group's series (a
    #: building with two meters covers 2 × 3600 s of a full hour)
    covered_s: Values


def energy_totals(
    intervals: Intervals, resolution: Literal["1h", "1d"], tz: str = "Europe/Oslo"
) -> EnergyTotals:
    """kWh per group (building) per hour or per local day (Europe/Oslo: 23–25 h days).

    An interval that spans bucket boundaries is shared between the buckets in
    proportion to time, i.e. assuming steady power within it; so 15-minute meter
    readings that straddle an hour, or a reading after a long silence, land in the
    right hours.  Days are sums of whole hours, which holds for zones whose UTC
    offsets are whole hours (Europe/Oslo); others are refused.
    """
    if resolution not in ("1h", "1d"):
        raise ValueError(f"energy totals are hourly or daily, not {resolution!r}")
    start, end = intervals.start_us, intervals.end_us
    if not fixed_width_in_utc(tz, HOUR_US, np.concatenate([start, end])):
        raise ValueError(f"{tz} has UTC offsets that are not whole hours")
    first_hour = start // HOUR_US
    pieces = (end - 1) // HOUR_US - first_hour + 1
    which = np.repeat(np.arange(len(intervals)), pieces)
    # k-th piece of each interval: position minus the interval's first position
    first_piece = np.cumsum(pieces) - pieces
    k = np.arange(len(which)) - np.repeat(first_piece, pieces)
    hour = (first_hour[which] + k) * HOUR_US
    piece_start = np.maximum(start[which], hour)
    piece_end = np.minimum(end[which], hour + HOUR_US)
    share = (piece_end - piece_start) / (end - start)[which]
    kwh = intervals.kwh[which] * share
    covered_s = (piece_end - piece_start) / US_PER_S
    bucket = hour if resolution == "1h" else bucket_starts(hour, "1d", tz)
    group = intervals.group_id[which]
    order, starts = _groups(group, bucket)
    if len(order) == 0:
        return EnergyTotals(group, bucket, kwh, covered_s)
    return EnergyTotals(
        group_id=group[order][starts],
        bucket=bucket[order][starts],
        kwh=np.add.reduceat(kwh[order], starts),
        covered_s=np.add.reduceat(covered_s[order], starts),
    )


def merge_energy_totals(parts: Sequence[EnergyTotals]) -> EnergyTotals:
    """Totals of disjoint sets of intervals as one: kWh and covered seconds add up per
    group and bucket, so a day's meters can be totalled a chunk of readings at a time
    (the interval between two chunks belongs to one of them) and merged here."""
    group = np.concatenate([np.empty(0, np.int64), *(p.group_id for p in parts)])
    bucket = np.concatenate([np.empty(0, np.int64), *(p.bucket for p in parts)])
    kwh = np.concatenate([np.empty(0), *(p.kwh for p in parts)])
    covered_s = np.concatenate([np.empty(0), *(p.covered_s for p in parts)])
    order, starts = _groups(group, bucket)
    if len(order) == 0:
        return EnergyTotals(group, bucket, kwh, covered_s)
    return EnergyTotals(
        group_id=group[order][starts],
        bucket=bucket[order][starts],
        kwh=np.add.reduceat(kwh[order], starts),
        covered_s=np.add.reduceat(covered_s[order], starts),
    )


def co2e_kg(kwh: Values | float, grid_factor_g_per_kwh: float) -> Values:
    """Greenhouse-gas emissions of electricity use, in kg CO2-equivalent.

    The grid factor is configuration, not a constant here: the location-based factor
    of the Norwegian mix is low (of the order of 10–30 g/kWh, varying by year and
    method) and a municipality should use the figure NVE publishes for the year, or a
    market-based one if that is what its climate accounts use.
    """
    if not np.isfinite(grid_factor_g_per_kwh) or grid_factor_g_per_kwh < 0:
        raise ValueError(f"grid factor must be a non-negative number, not {grid_factor_g_per_kwh}")
    return np.asarray(kwh, dtype=np.float64) * (grid_factor_g_per_kwh / 1000.0)


# -- Traffic -----------------------------------------------------------------------------

#: Privacy: traffic is published only as aggregates of at least 15 minutes, so that a
#: single vehicle's passage cannot be read off the data (DESIGN.md).
MIN_PUBLISHED_BUCKET_S = 900

Stamp = Literal["start", "end"]


def _interval_starts(times_us: Times, interval_s: float, bucket_s: float, stamped: Stamp) -> Times:
    if bucket_s < MIN_PUBLISHED_BUCKET_S:
        raise ValueError(
            f"traffic aggregates must be at least {MIN_PUBLISHED_BUCKET_S} s (15 min) "
            f"wide for privacy, not {bucket_s} s"
        )
    if interval_s <= 0 or interval_s > bucket_s or (bucket_s % interval_s) != 0:
        raise ValueError(
            f"a counter's {interval_s} s interval must divide the {bucket_s} s buckets: "
            "a count cannot be split between buckets"
        )
    if stamped not in ("start", "end"):
        raise ValueError(f"stamped must be 'start' or 'end', not {stamped!r}")
    t = np.asarray(times_us, dtype=np.int64)
    # a count stamped at the end of its interval belongs to the bucket where it began
    return t - round(interval_s * US_PER_S) if stamped == "end" else t


@dataclass(frozen=True, slots=True)
class TrafficBuckets:
    """Per counter and bucket, sorted by counter then bucket."""

    counter_id: npt.NDArray[np.int64]
    bucket: Times
    volume: Values  # vehicles
    mean_speed_kmh: Values  # count-weighted; NaN without vehicles with a speed
    heavy_share: Values  # heavy / all vehicles, over intervals reporting both
    coverage: Values  # share of the bucket covered by reported intervals
    # the weights behind the two ratios, so buckets merge into longer ones exactly
    speed_volume: Values  # vehicles counted in intervals that reported a speed
    heavy_volume: Values  # heavy vehicles, over intervals reporting both counts
    heavy_base: Values  # all vehicles, over those same intervals


@dataclass(frozen=True, slots=True)
class TrafficSums:
    """What `TrafficBuckets` are made of, per counter and bucket (sorted by counter
    then bucket): sums only, so sums of disjoint sets of intervals merge by addition
    (`merge_traffic_sums`), and a day read a chunk at a time is finished once, when
    its counters' reporting intervals are known (`finish_traffic`)."""

    counter_id: npt.NDArray[np.int64]
    bucket: Times
    volume: Values  # vehicles
    reported: Values  # intervals that reported a vehicle count
    speed_volume: Values  # vehicles counted in intervals that reported a speed
    speed_sum: Values  # Σ vehicles × speed over those intervals
    heavy_volume: Values  # heavy vehicles, over intervals reporting both counts
    heavy_base: Values  # all vehicles, over those same intervals

    def __len__(self) -> int:
        return len(self.counter_id)


def _check_bucket(bucket_s: float) -> None:
    if bucket_s < MIN_PUBLISHED_BUCKET_S:
        raise ValueError(
            f"traffic aggregates must be at least {MIN_PUBLISHED_BUCKET_S} s (15 min) "
            f"wide for privacy, not {bucket_s} s"
        )
    if HOUR_US % (bucket_s * US_PER_S) != 0:
        raise ValueError(f"bucket_s must divide an hour (900, 1200, 1800, 3600), not {bucket_s}")


def traffic_sums(
    counter_ids: Ids,
    starts_us: Times,
    vehicles: Values,
    heavy: Values,
    speed_kmh: Values,
    *,
    bucket_s: int = 3600,
) -> TrafficSums:
    """The sums behind `traffic_buckets` of counts whose intervals start at
    ``starts_us`` (shift counts stamped at their interval's end first): a count
    belongs to the bucket its interval starts in.  NaN where a metric was not
    reported, as in `traffic_buckets`."""
    _check_bucket(bucket_s)
    c = np.asarray(counter_ids, dtype=np.int64)
    t = np.asarray(starts_us, dtype=np.int64)
    n = np.asarray(vehicles, dtype=np.float64)
    h = np.asarray(heavy, dtype=np.float64)
    sp = np.asarray(speed_kmh, dtype=np.float64)
    if not len(c) == len(t) == len(n) == len(h) == len(sp):
        raise ValueError("counter_ids, times_us, vehicles, heavy and speed_kmh differ in length")
    width = bucket_s * US_PER_S
    bucket = t - t % width
    order, starts = _groups(c, bucket)
    counted = ~np.isnan(n)
    with_speed = counted & ~np.isnan(sp) & (n > 0)
    with_heavy = counted & ~np.isnan(h)

    def total(x: Values) -> Values:
        if len(order) == 0:
            return np.empty(0, dtype=np.float64)
        return np.add.reduceat(x[order], starts)

    return TrafficSums(
        counter_id=c[order][starts],
        bucket=bucket[order][starts],
        volume=total(np.where(counted, n, 0.0)),
        reported=total(counted.astype(np.float64)),
        speed_volume=total(np.where(with_speed, n, 0.0)),
        speed_sum=total(np.where(with_speed, n * sp, 0.0)),
        heavy_volume=total(np.where(with_heavy, h, 0.0)),
        heavy_base=total(np.where(with_heavy, n, 0.0)),
    )


def merge_traffic_sums(parts: Sequence[TrafficSums]) -> TrafficSums:
    """Sums of disjoint sets of intervals (chunks of a day, say) as one."""
    names = TrafficSums.__slots__
    empty = {"counter_id": np.empty(0, np.int64), "bucket": np.empty(0, np.int64)}
    columns = {
        name: np.concatenate([empty.get(name, np.empty(0)), *(getattr(p, name) for p in parts)])
        for name in names
    }
    order, starts = _groups(columns["counter_id"], columns["bucket"])
    if len(order) == 0:
        return TrafficSums(**columns)
    return TrafficSums(
        **{
            name: (x[order][starts] if name in empty else np.add.reduceat(x[order], starts))
            for name, x in columns.items()
        }
    )


def finish_traffic(sums: TrafficSums, *, interval_s: float, bucket_s: int = 3600) -> TrafficBuckets:
    """Volume, mean speed, heavy share and coverage from the sums of a counter whose
    reporting interval is ``interval_s``."""
    _check_bucket(bucket_s)
    if interval_s <= 0 or interval_s > bucket_s or (bucket_s % interval_s) != 0:
        raise ValueError(
            f"a counter's {interval_s} s interval must divide the {bucket_s} s buckets: "
            "a count cannot be split between buckets"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_speed = np.where(sums.speed_volume > 0, sums.speed_sum / sums.speed_volume, np.nan)
        heavy_share = np.where(sums.heavy_base > 0, sums.heavy_volume / sums.heavy_base, np.nan)
    return TrafficBuckets(
        counter_id=sums.counter_id,
        bucket=sums.bucket,
        volume=sums.volume,
        mean_speed_kmh=mean_speed,
        heavy_share=heavy_share,
        coverage=sums.reported * interval_s / bucket_s,
        speed_volume=sums.speed_volume,
        heavy_volume=sums.heavy_volume,
        heavy_base=sums.heavy_base,
    )


def traffic_buckets(
    counter_ids: Ids,
    times_us: Times,
    vehicles: Values,
    heavy: Values,
    speed_kmh: Values,
    *,
    interval_s: float,
    bucket_s: int = 3600,
    stamped: Stamp = "end",
) -> TrafficBuckets:
    """Volume, mean speed and heavy-vehicle share per counter and bucket (hourly by
    default; widths of 15, 20, 30 or 60 minutes, aligned to the hour).

    A row is one counter's reporting interval (``interval_s`` long, stamped at its
    start or end) with the three metrics side by side, NaN where one was not
    reported.  Mean speed is weighted by the vehicles counted with it; the heavy share
    only uses intervals that report both counts, so a missing heavy count does not
    dilute it.
    """
    starts_us = _interval_starts(times_us, interval_s, bucket_s, stamped)
    if HOUR_US % (bucket_s * US_PER_S) != 0:
        raise ValueError(f"bucket_s must divide an hour (900, 1200, 1800, 3600), not {bucket_s}")
    sums = traffic_sums(counter_ids, starts_us, vehicles, heavy, speed_kmh, bucket_s=bucket_s)
    return finish_traffic(sums, interval_s=interval_s, bucket_s=bucket_s)


@dataclass(frozen=True, slots=True)
class DailyTraffic:
    """Per counter and local day, sorted by counter then day."""

    counter_id: npt.NDArray[np.int64]
    day: Times  # local midnight, µs UTC
    volume: Values
    coverage: Values  # reported intervals × interval / the day's length (23–25 h)


def daily_traffic(
    counter_ids: Ids,
    times_us: Times,
    vehicles: Values,
    *,
    interval_s: float,
    stamped: Stamp = "end",
    tz: str = "Europe/Oslo",
) -> DailyTraffic:
    """Vehicles per counter and local day, with how much of the day was reported."""
    starts_us = _interval_starts(times_us, interval_s, 86_400, stamped)
    c = np.asarray(counter_ids, dtype=np.int64)
    n = np.asarray(vehicles, dtype=np.float64)
    if not len(c) == len(starts_us) == len(n):
        raise ValueError("counter_ids, times_us and vehicles differ in length")
    counted = ~np.isnan(n)
    c, starts_us, n = c[counted], starts_us[counted], n[counted]
    day = bucket_starts(starts_us, "1d", tz)
    order, starts = _groups(c, day)
    if len(order) == 0:
        empty = np.empty(0, dtype=np.float64)
        return DailyTraffic(c, day, empty, empty)
    days = day[order][starts]
    length_s = (bucket_starts(days + 36 * HOUR_US, "1d", tz) - days) / US_PER_S
    reported = np.diff(np.append(starts, len(order)))
    return DailyTraffic(
        counter_id=c[order][starts],
        day=days,
        volume=np.add.reduceat(n[order], starts),
        coverage=reported * interval_s / length_s,
    )


@dataclass(frozen=True, slots=True)
class AverageDailyTraffic:
    counter_id: npt.NDArray[np.int64]
    vehicles_per_day: Values  # mean volume of the full days
    full_days: npt.NDArray[np.int64]  # how many days the mean is over


def average_daily_traffic(daily: DailyTraffic, *, min_coverage: float = 1.0) -> AverageDailyTraffic:
    """Average daily traffic per counter: the mean volume of its full days (coverage at
    least ``min_coverage``; a partly reported day would pull the mean down).  Counters
    without a full day are left out."""
    full = daily.coverage >= min_coverage - 1e-9
    c, volume = daily.counter_id[full], daily.volume[full]
    order, starts = _groups(c)
    if len(order) == 0:
        return AverageDailyTraffic(c, volume, np.empty(0, dtype=np.int64))
    days = np.diff(np.append(starts, len(order)))
    return AverageDailyTraffic(
        counter_id=c[order][starts],
        vehicles_per_day=np.add.reduceat(volume[order], starts) / days,
        full_days=days.astype(np.int64),
    )
