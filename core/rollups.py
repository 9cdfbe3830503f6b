"""Mergeable partial aggregates per series and time bucket (1 minute, 1 hour, 1 day).

A partial holds, per (series, bucket): count, good_count, sum, sum of squares, min,
max, and the first and last reading (time and value).  Every column combines with
the same column of another partial by addition, min, max, or "earliest / latest
wins", so partials computed by several workers, for late readings or by a re-run,
merge into the same numbers as computing over all readings at once (`merge`; the
rollups table does the same with an upsert, below).

Which readings count
--------------------
* ``count``, ``sum``, ``sum_sq``, ``min``, ``max``, first and last cover the readings
  whose value is *usable*: QARTOD flag 1 (good), 2 (not evaluated) or 3 (suspect).
  FAIL (4) readings are physically impossible or broken values, and MISSING (9) /
  NaN values have nothing to add, so neither enters a rollup at all: a bucket whose
  readings all failed has no rollup row.  Every column of a row therefore describes
  the same readings, and ``mean = sum / count`` holds for anyone reading the table.
  (Failed readings stay in ``readings`` and are counted there.)
* ``good_count`` counts those of them flagged 1 or 2, i.e. not suspect: a reading no
  test could judge is not held against the sensor.  ``count − good_count`` is the
  number of suspect readings.
* The caller passes the readings that were newly stored: a redelivered reading that
  the database absorbed as a duplicate must not be counted twice.

Buckets
-------
1-minute and 1-hour buckets start on whole minutes and hours of local time, which in
Europe/Oslo (whole-hour UTC offsets) are whole minutes and hours in UTC.  Daily
buckets start at local midnight, so a day is 23 hours on the spring-forward day and
25 hours on the fall-back day.  The zone's UTC offsets come from its transition list
(found once per zone and year with `zoneinfo`, cached) and `np.searchsorted`.

The upsert that mirrors `merge`
-------------------------------
Insert one partial row per key (``merge`` the batch's partials first: ``ON CONFLICT
DO UPDATE`` may touch a row only once per statement); `MERGE_SQL` below is that
upsert, from a staging table ``rollups_staging`` that carries the resolution as a
code (the index into `RESOLUTIONS`).  PostgreSQL evaluates every ``SET`` expression
against the old row, and compares row values lexicographically.

First and last are the lexicographic minimum / maximum of (time, value): two readings
at the same instant (which the readings key forbids, but a merge must not care) then
still merge the same way in any order, so merging is associative and commutative.

1-minute rows only where a minute holds several readings
--------------------------------------------------------
Hourly and daily rows are kept for every series.  A 1-minute row is written only for
a series that reports at least about twice a minute (`minute_readings`): for a series
reporting once a minute or slower, each reading already *is* its minute, and a row
per reading cost more than a third of ingest's CPU and more room than the reading
itself (issue 17).  Its minutes are computed from ``readings`` when asked for
(`db.rollups.minute_partials_query`), a day's worth in one pass over the readings'
primary key: in PostgreSQL about what the plain GROUP BY costs, while a series
reporting every second keeps the rows that spare reading 60 readings a minute.

Which minutes have rows is a hint, never a promise: the readers judge an hour's
minute rows complete only when their counts add up to its hourly row's count, and
compute the hour from the readings otherwise.  So whatever a writer decides (it
cannot see other workers' readings, nor the readings after a gap), answers are exact.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Literal, LiteralString, TypeVar, get_args
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from core.qc import FAIL, GOOD, MISSING, NOT_EVALUATED

Resolution = Literal["1m", "1h", "1d"]
RESOLUTIONS: tuple[Resolution, ...] = get_args(Resolution)
DEFAULT_TZ = "Europe/Oslo"

#: the partials staged in ``rollups_staging`` going into ``rollups``; the conflict
#: action (merge or replace) follows.  Resolution codes index RESOLUTIONS.
INSERT_STAGED_SQL: LiteralString = """
    INSERT INTO rollups AS r (series_id, resolution, bucket, count, good_count, sum, sum_sq,
                              min, max, first_time, first_value, last_time, last_value)
    SELECT series_id, (ARRAY['1m', '1h', '1d'])[resolution_code + 1], bucket, count,
           good_count, sum, sum_sq, min, max, first_time, first_value, last_time, last_value
    FROM rollups_staging"""

#: `merge` as an upsert into ``rollups`` from ``rollups_staging`` (module docstring)
MERGE_SQL: LiteralString = (
    INSERT_STAGED_SQL
    + """
    ON CONFLICT (series_id, resolution, bucket) DO UPDATE SET
        count       = r.count + EXCLUDED.count,
        good_count  = r.good_count + EXCLUDED.good_count,
        sum         = r.sum + EXCLUDED.sum,
        sum_sq      = r.sum_sq + EXCLUDED.sum_sq,
        min         = LEAST(r.min, EXCLUDED.min),
        max         = GREATEST(r.max, EXCLUDED.max),
        first_time  = LEAST(r.first_time, EXCLUDED.first_time),
        first_value = CASE WHEN (EXCLUDED.first_time, EXCLUDED.first_value)
                                < (r.first_time, r.first_value)
                           THEN EXCLUDED.first_value ELSE r.first_value END,
        last_time   = GREATEST(r.last_time, EXCLUDED.last_time),
        last_value  = CASE WHEN (EXCLUDED.last_time, EXCLUDED.last_value)
                                > (r.last_time, r.last_value)
                           THEN EXCLUDED.last_value ELSE r.last_value END"""
)

US_PER_S = 1_000_000
MINUTE_US = 60 * US_PER_S
HOUR_US = 3600 * US_PER_S
DAY_US = 24 * HOUR_US
_WIDTH_US: dict[str, int] = {"1m": MINUTE_US, "1h": HOUR_US, "1d": DAY_US}

_G = TypeVar("_G", bound=np.generic)

Times = npt.NDArray[np.int64]
Values = npt.NDArray[np.float64]
Counts = npt.NDArray[np.int64]


# -- time zones --------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _year_transitions(tz: str, year: int) -> tuple[tuple[int, int], ...]:
    """(instant in µs, UTC offset in µs from then on) for each offset change in a year.

    Probes the offset at every UTC midnight of the year and bisects to the second
    where it changes: ~370 `zoneinfo` calls per zone and year, once.  (Two changes
    within one day would be missed; no zone has had them since the 1940s.)
    """
    zone = ZoneInfo(tz)

    def offset_s(epoch_s: int) -> int:
        delta = datetime.fromtimestamp(epoch_s, zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    found: list[tuple[int, int]] = []
    day = 86_400
    before = offset_s(start)
    for lo in range(start, end, day):
        hi = min(lo + day, end)
        after = offset_s(hi)
        if after == before:
            continue
        a, b = lo, hi  # offset(a) == before != offset(b): bisect to the first second
        while b - a > 1:
            mid = (a + b) // 2
            if offset_s(mid) == before:
                a = mid
            else:
                b = mid
        found.append((b * US_PER_S, after * US_PER_S))
        before = after
    return tuple(found)


@functools.lru_cache(maxsize=256)
def _zone_table(tz: str, first_year: int, last_year: int) -> tuple[Times, Times]:
    """Transition instants and the offsets in force: offsets[i] applies from
    instants[i - 1] (offsets[0] before the first instant) — `np.searchsorted` food."""
    zone = ZoneInfo(tz)
    first = datetime(first_year, 1, 1, tzinfo=UTC)
    initial = first.astimezone(zone).utcoffset()
    offsets = [int(initial.total_seconds()) * US_PER_S if initial is not None else 0]
    instants: list[int] = []
    for year in range(first_year, last_year + 1):
        for instant, offset in _year_transitions(tz, year):
            instants.append(instant)
            offsets.append(offset)
    return np.array(instants, dtype=np.int64), np.array(offsets, dtype=np.int64)


def _year_of(time_us: int) -> int:
    return datetime.fromtimestamp(time_us // US_PER_S, UTC).year


def utc_offsets(times_us: Times, tz: str = DEFAULT_TZ) -> Times:
    """The zone's UTC offset (µs, local − UTC) at each instant."""
    t = np.asarray(times_us, dtype=np.int64)
    if t.size == 0:
        return np.empty(0, dtype=np.int64)
    # a year either side: local days and next-bucket look-ups cross year ends
    first = max(_year_of(int(t.min())) - 1, 1)
    last = min(_year_of(int(t.max())) + 1, 9998)
    instants, offsets = _zone_table(tz, first, last)
    return offsets[np.searchsorted(instants, t, side="right")]


def fixed_width_in_utc(tz: str, width_us: int, t: Times) -> bool:
    """Whether local buckets of this width are plain UTC buckets over the span of t
    (true for minutes and hours whenever every offset is a whole number of them, as
    in Europe/Oslo)."""
    if t.size == 0:
        return True
    first = max(_year_of(int(t.min())) - 1, 1)
    last = min(_year_of(int(t.max())) + 1, 9998)
    _, offsets = _zone_table(tz, first, last)
    return bool((offsets % width_us == 0).all())


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float on the way)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_S + delta.microseconds


def from_epoch_us(us: int | np.integer) -> datetime:
    """The UTC moment ``us`` microseconds after the epoch, exactly."""
    return _EPOCH + timedelta(microseconds=int(us))


def local_days(start_us: int, end_us: int, tz: str = DEFAULT_TZ) -> Times:
    """The local midnights of every day touching [start_us, end_us), in order."""
    first = int(bucket_starts(np.array([start_us], np.int64), "1d", tz)[0])
    # noon of each calendar day from the first: DST moves a local day by an hour at
    # most, so noon always lands inside the day it stands for
    noons = first + 12 * HOUR_US + np.arange((end_us - first) // DAY_US + 2) * DAY_US
    days = np.unique(bucket_starts(noons, "1d", tz))
    return days[days < end_us]


def bucket_starts(times_us: Times, resolution: Resolution, tz: str = DEFAULT_TZ) -> Times:
    """The start (µs since the epoch, UTC) of the bucket holding each instant.

    Minutes and hours are fixed-width on the local clock; in Europe/Oslo they are
    plain UTC minutes and hours.  Days start at local midnight, so their length
    follows DST (23 h and 25 h days).  (Exact wherever clocks change away from
    midnight, as everywhere in Europe; where a change skips midnight the day starts
    at its first instant, where it repeats midnight, at the second one.)
    """
    t = np.asarray(times_us, dtype=np.int64)
    width = _WIDTH_US.get(resolution)
    if width is None:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, not {resolution!r}")
    if resolution != "1d":
        if fixed_width_in_utc(tz, width, t):
            return t - t % width  # % floors for negative numbers too
        local = t + utc_offsets(t, tz)
        return t - local % width
    local = t + utc_offsets(t, tz)
    local_midnight = local - local % DAY_US  # midnight in "local µs since the epoch"
    # the offset in force at midnight can differ from the one at t (the change is
    # at 02:00/03:00 local in Europe); one refinement from a first guess settles it
    guess = local_midnight - utc_offsets(t, tz)
    return local_midnight - utc_offsets(guess, tz)


def next_bucket_starts(starts_us: Times, resolution: Resolution, tz: str = DEFAULT_TZ) -> Times:
    """The start of the bucket after each bucket start (its end, exclusive)."""
    b = np.asarray(starts_us, dtype=np.int64)
    if resolution == "1d":
        # 36 h lands inside the next day whatever its length (23–25 h each)
        return bucket_starts(b + 36 * HOUR_US, "1d", tz)
    return bucket_starts(b + _WIDTH_US[resolution], resolution, tz)


# -- partials ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Partials:
    """One row per (series, bucket), sorted by series then bucket; the columns of the
    rollups table (migration 0001), in its order, plus the resolution and zone."""

    resolution: Resolution
    series_id: npt.NDArray[np.int32]
    bucket: Times  # µs since the epoch, UTC
    count: Counts  # usable readings (flags 1, 2, 3)
    good_count: Counts  # of which flagged 1 or 2
    sum: Values
    sum_sq: Values
    min: Values
    max: Values
    first_time: Times
    first_value: Values
    last_time: Times
    last_value: Values
    tz: str = DEFAULT_TZ

    def __len__(self) -> int:
        return len(self.series_id)

    @classmethod
    def empty(cls, resolution: Resolution, tz: str = DEFAULT_TZ) -> Partials:
        i8, f8 = np.empty(0, np.int64), np.empty(0, np.float64)
        return cls(
            resolution, np.empty(0, np.int32), i8, i8, i8, f8, f8, f8, f8, i8, f8, i8, f8, tz
        )

    def columns(self) -> dict[str, npt.NDArray[np.generic]]:
        """The table's columns by name (for binary COPY into a staging table)."""
        return {name: getattr(self, name) for name in ROLLUP_COLUMNS}


#: the rollups table's columns that a partial fills, in table order (resolution is
#: the same for every row: a constant in the upsert)
ROLLUP_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in fields(Partials) if f.name not in ("resolution", "tz")
)


# Distinct bucket starts of a resolution are at least this far apart in any zone
# (offsets change by whole quarter hours; no day is shorter than 12 hours), so
# (start − earliest) // spacing numbers the buckets without gaps that matter.
_MIN_SPACING_US: dict[str, int] = {"1m": MINUTE_US, "1h": 15 * MINUTE_US, "1d": 12 * HOUR_US}
# Direct addressing of (series, bucket) slots is used while the slot table stays
# within this many slots per row (plus a floor for small batches).
_DENSE_SLOTS_PER_ROW = 4
_DENSE_SLOTS_FLOOR = 1 << 20


def _group_ids(
    series: npt.NDArray[np.int32], bucket: Times, resolution: Resolution
) -> tuple[npt.NDArray[np.intp], int]:
    """For each row, the number of its (series, bucket) group, groups numbered in
    (series, bucket) order; and the number of groups.

    Usually by direct addressing: a slot per (series, bucket) pair in the span of the
    data, a `np.bincount` to find the occupied ones.  That touches each row a few
    times and never sorts (10 M readings of 1000 series in a few tens of ms).  When
    the span is too sparse for that (a batch with a few readings from days ago and
    series ids far apart), a stable argsort of one int64 key does it instead.
    """
    n = len(series)
    if n == 0:
        return np.empty(0, dtype=np.intp), 0
    s = series.astype(np.int64)
    s_lo = int(s.min())
    b_lo = int(bucket.min())
    slot_b = (bucket - b_lo) // _MIN_SPACING_US[resolution]
    n_s = int(s.max()) - s_lo + 1
    n_b = int(slot_b.max()) + 1
    if n_s * n_b <= max(_DENSE_SLOTS_PER_ROW * n, _DENSE_SLOTS_FLOOR):
        slot = (s - s_lo) * n_b + slot_b
        occupied = np.flatnonzero(np.bincount(slot, minlength=n_s * n_b))
        number = np.empty(n_s * n_b, dtype=np.intp)
        number[occupied] = np.arange(len(occupied))
        return number[slot], len(occupied)
    if n_s < 2**31 and n_b < 2**32:
        order = np.argsort(((s - s_lo) << 32) | slot_b, kind="stable")
        ss, bs = s[order], slot_b[order]
    else:  # pragma: no cover - needs timestamps tens of thousands of years apart
        order = np.lexsort((slot_b, s))
        ss, bs = s[order], slot_b[order]
    new_group = np.concatenate([[False], (ss[1:] != ss[:-1]) | (bs[1:] != bs[:-1])])
    groups = np.empty(n, dtype=np.intp)
    groups[order] = np.cumsum(new_group)
    return groups, int(groups[order[-1]]) + 1


def _aggregate(
    resolution: Resolution,
    tz: str,
    series: npt.NDArray[np.int32],
    bucket: Times,
    count: Counts | None,
    good_count: Counts,
    total: Values,
    total_sq: Values,
    low: Values,
    high: Values,
    first_time: Times,
    first_value: Values,
    last_time: Times,
    last_value: Values,
) -> Partials:
    """Combine rows (readings, or partial rows) that share a (series, bucket).

    Readings are partials of one reading each (count None: one each), so `partials`
    and `merge` are the same operation; only the inputs differ.
    """
    group, g = _group_ids(series, bucket, resolution)
    out_series = np.empty(g, dtype=np.int32)
    out_series[group] = series  # every row of a group writes the same value
    out_bucket = np.empty(g, dtype=np.int64)
    out_bucket[group] = bucket

    def add(x: Counts) -> Counts:
        acc = np.zeros(g, dtype=np.int64)
        np.add.at(acc, group, x)
        return acc

    def weighted(x: Values) -> Values:
        return np.bincount(group, weights=x, minlength=g).astype(np.float64, copy=False)

    def extreme(x: npt.NDArray[_G], ufunc: np.ufunc, start: float | int) -> npt.NDArray[_G]:
        acc = np.full(g, start, dtype=x.dtype)
        ufunc.at(acc, group, x)
        return acc

    int_max, int_min = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    earliest = extreme(first_time, np.minimum, int_max)
    latest = extreme(last_time, np.maximum, int_min)
    # First / last are the lexicographic min / max of (time, value): among rows at the
    # group's earliest time, the smallest value (any order of merging agrees on it).
    at_first = first_time == earliest[group]
    first = np.full(g, np.inf)
    np.minimum.at(first, group[at_first], first_value[at_first])
    at_last = last_time == latest[group]
    last = np.full(g, -np.inf)
    np.maximum.at(last, group[at_last], last_value[at_last])
    return Partials(
        resolution=resolution,
        series_id=out_series,
        bucket=out_bucket,
        count=np.bincount(group, minlength=g).astype(np.int64) if count is None else add(count),
        good_count=add(good_count),
        sum=weighted(total),
        sum_sq=weighted(total_sq),
        min=extreme(low, np.minimum, np.inf),
        max=extreme(high, np.maximum, -np.inf),
        first_time=earliest,
        first_value=first,
        last_time=latest,
        last_value=last,
        tz=tz,
    )


def partials(
    series_ids: npt.NDArray[np.int32],
    times_us: Times,
    values: Values,
    quality: npt.NDArray[np.int16],
    resolution: Resolution,
    tz: str = DEFAULT_TZ,
) -> Partials:
    """The partial aggregates of a set of readings (any order) per series and bucket."""
    n = len(series_ids)
    if not n == len(times_us) == len(values) == len(quality):
        raise ValueError("series_ids, times_us, values and quality differ in length")
    q = np.asarray(quality)
    v = np.asarray(values, dtype=np.float64)
    usable = (q != FAIL) & (q != MISSING) & ~np.isnan(v)
    s = np.asarray(series_ids).astype(np.int32, copy=False)
    t = np.asarray(times_us, dtype=np.int64)
    if not usable.all():
        s, t, v, q = s[usable], t[usable], v[usable], q[usable]
    good = ((q == GOOD) | (q == NOT_EVALUATED)).astype(np.int64)
    b = bucket_starts(t, resolution, tz)
    return _aggregate(resolution, tz, s, b, None, good, v, v * v, v, v, t, v, t, v)


def merge(a: Partials, b: Partials) -> Partials:
    """Two partial sets as one: what the rollups upsert does, row by row."""
    if a.resolution != b.resolution or a.tz != b.tz:
        raise ValueError(
            f"cannot merge {a.resolution} ({a.tz}) partials with {b.resolution} ({b.tz})"
        )
    if len(a) == 0:
        return b
    if len(b) == 0:
        return a

    def both(x: npt.NDArray[_G], y: npt.NDArray[_G]) -> npt.NDArray[_G]:
        return np.concatenate([x, y])

    return _aggregate(
        a.resolution,
        a.tz,
        both(a.series_id, b.series_id),
        both(a.bucket, b.bucket),
        both(a.count, b.count),
        both(a.good_count, b.good_count),
        both(a.sum, b.sum),
        both(a.sum_sq, b.sum_sq),
        both(a.min, b.min),
        both(a.max, b.max),
        both(a.first_time, b.first_time),
        both(a.first_value, b.first_value),
        both(a.last_time, b.last_time),
        both(a.last_value, b.last_value),
    )


# -- which readings get 1-minute rows --------------------------------------------------

#: A series gets 1-minute rollup rows where its readings are on average at most this far
#: apart: about two or more a minute.  Half a minute, not a minute, so that a series
#: reporting once a minute with some jitter (59 s, then 61 s) never qualifies.
MINUTE_ROWS_SPACING_US = 30 * US_PER_S
#: a series `LatestTimes` has not seen
UNSEEN = np.iinfo(np.int64).min


class LatestTimes:
    """The latest reading time per series that one writer has merged: what lets a
    batch holding a single reading of a series tell whether that series reports
    often (its previous reading was a second ago) or not.

    Only a hint for `minute_readings`: out of date for series other writers take
    readings of, and empty after a restart, which can at worst cost an hour its
    complete minute rows (then computed from readings).  Series ids are kept sorted,
    so a batch costs a binary search per series, whatever the ids are."""

    def __init__(self) -> None:
        self._ids = np.empty(0, dtype=np.int64)
        self._times = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    def of(self, series_ids: npt.NDArray[np.integer]) -> Times:
        """The latest time of each series (`UNSEEN` for series never merged)."""
        ids = np.asarray(series_ids, dtype=np.int64)
        if not len(self._ids):
            return np.full(len(ids), UNSEEN, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._ids, ids), len(self._ids) - 1)
        return np.where(self._ids[at] == ids, self._times[at], UNSEEN)

    def advance(self, series_ids: npt.NDArray[np.int64], times_us: Times) -> None:
        """Remember these latest times of these series (ids ascending, each once); an
        earlier time than the one remembered changes nothing."""
        ids = np.asarray(series_ids, dtype=np.int64)
        times = np.asarray(times_us, dtype=np.int64)
        at = np.searchsorted(self._ids, ids)
        known = at < len(self._ids)
        known[known] = self._ids[at[known]] == ids[known]
        self._times[at[known]] = np.maximum(self._times[at[known]], times[known])
        if not known.all():  # new series: inserted in order (np.insert keeps it sorted)
            self._ids = np.insert(self._ids, at[~known], ids[~known])
            self._times = np.insert(self._times, at[~known], times[~known])


def minute_readings(
    series_ids: npt.NDArray[np.int32],
    times_us: Times,
    latest: LatestTimes | None = None,
) -> npt.NDArray[np.bool_]:
    """Which of these readings go into 1-minute rollup rows: those of the series that
    report about twice a minute or more, judged on this batch.  A series qualifies
    when its readings here are on average at most `MINUTE_ROWS_SPACING_US` apart, or
    when the reading ``latest`` remembers for it lies within that of this batch's
    readings (a batch of one reading each); ``latest`` then remembers this batch.
    All readings of a series in a batch go the same way, so its minutes are whole
    unless the batch itself starts or ends a fast stretch (see the module docstring:
    that is safe)."""
    s = np.asarray(series_ids).astype(np.int32, copy=False)
    t = np.asarray(times_us, dtype=np.int64)
    if not len(s):
        return np.zeros(0, dtype=bool)
    group, g = _group_ids(s, np.zeros(len(s), dtype=np.int64), "1d")
    ids = np.empty(g, dtype=np.int32)
    ids[group] = s
    n = np.bincount(group, minlength=g)
    first = np.full(g, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, group, t)
    last = np.full(g, UNSEEN, dtype=np.int64)
    np.maximum.at(last, group, t)
    often = (n >= 2) & (last - first <= (n - 1) * MINUTE_ROWS_SPACING_US)
    if latest is not None:
        before = latest.of(ids)
        often |= (
            (before != UNSEEN)
            & (before >= first - MINUTE_ROWS_SPACING_US)
            & (before <= last + MINUTE_ROWS_SPACING_US)
        )
        latest.advance(ids.astype(np.int64), last)
    selected: npt.NDArray[np.bool_] = often[group]
    return selected


# -- finishing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """Partials turned into statistics, row for row."""

    series_id: npt.NDArray[np.int32]
    bucket: Times
    bucket_end: Times  # exclusive; a day is 23, 24 or 25 hours
    count: Counts
    mean: Values
    std: Values  # population standard deviation (ddof 0 unless asked otherwise)
    min: Values
    max: Values
    good_share: Values  # good_count / count: share of readings not suspect
    coverage: Values  # count / expected readings; NaN without an expected interval


def finalize(
    p: Partials,
    *,
    expected_interval_s: float | npt.NDArray[np.float64] | None = None,
    ddof: int = 0,
) -> Summary:
    """Mean, standard deviation, good share and coverage per (series, bucket).

    The standard deviation is the population one by default: a bucket's readings are
    all the readings there are, not a sample of some larger set.  It comes from
    sum_sq / n − mean², which loses digits when the spread is tiny against the mean
    (relative error ≈ 1e-16 · mean² / variance: negligible for pressure near 1000 hPa
    or energy registers of 10⁶ kWh at a day's resolution); rounding can make that
    slightly negative, hence the clamp at 0.  With ``ddof=1`` a bucket of one
    reading has NaN.  ``expected_interval_s`` (scalar, or per row) is the series'
    reporting interval: coverage is then count / (bucket length / interval), with a
    day's true length (23–25 h).
    """
    n = p.count.astype(np.float64)
    end = next_bucket_starts(p.bucket, p.resolution, p.tz)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = p.sum / n
        variance = np.maximum(p.sum_sq - n * mean * mean, 0.0) / (n - ddof)
        variance[n - ddof <= 0] = np.nan
        if expected_interval_s is None:
            coverage = np.full(len(p), np.nan)
        else:
            expected = (end - p.bucket) / US_PER_S / np.asarray(expected_interval_s)
            coverage = n / expected
        good_share = p.good_count / n
    return Summary(
        series_id=p.series_id,
        bucket=p.bucket,
        bucket_end=end,
        count=p.count,
        mean=mean,
        std=np.sqrt(variance),
        min=p.min,
        max=p.max,
        good_share=good_share,
        coverage=coverage,
    )
