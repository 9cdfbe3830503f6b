"""Narvik's calendar: local time in Europe/Oslo with its daylight-saving shifts,
public and school holidays, the season, and the sun.

Human activity (rush hours, school days, holidays) follows local time; sun and weather
follow solar time at Narvik.  All times are epoch seconds (UTC).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np

from devices.simulation.draws import BoolArray, FloatArray, IntArray

#: Where the simulated sensors live: activity follows this zone's clock.
LOCAL_TIMEZONE: Final = "Europe/Oslo"
NARVIK_LAT: Final = 68.44
NARVIK_LON: Final = 17.43

DAY: Final = 86_400
HOUR: Final = 3_600
YEAR_DAYS: Final = 365.2422
EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()
_J2000: Final = 946_684_800  # 2000-01-01 00:00 UTC, the origin of the year phase

CHUNK_HOURS: Final = 2048  # hours computed (and cached) at a time: UTC offsets, weather, energy


@lru_cache(maxsize=1)
def _zone() -> ZoneInfo:
    return ZoneInfo(LOCAL_TIMEZONE)


@lru_cache(maxsize=64)
def _utc_offsets(chunk: int) -> FloatArray:
    """UTC offset (s) of local time for every hour of a chunk; DST changes on the hour."""
    zone = _zone()
    first = chunk * CHUNK_HOURS
    offsets = np.empty(CHUNK_HOURS)
    for i in range(CHUNK_HOURS):
        moment = dt.datetime.fromtimestamp((first + i) * HOUR, zone)
        delta = moment.utcoffset()
        offsets[i] = delta.total_seconds() if delta is not None else 0.0
    offsets.flags.writeable = False
    return offsets


def _easter(year: int) -> dt.date:
    """Easter Sunday (Gregorian; the anonymous algorithm of 1876)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    m = (32 + 2 * e + 2 * i - h - k) % 7
    n = (a + 11 * h + 22 * m) // 451
    month, day = divmod(h + m - 7 * n + 114, 31)
    return dt.date(year, month, day + 1)


@lru_cache(maxsize=32)
def _holidays(year: int) -> tuple[IntArray, IntArray, IntArray]:
    """Days (since 1970-01-01, local) that are public holidays, school holidays and
    summer closures (kindergartens, the swimming hall) in Narvik in ``year``."""

    def day(date: dt.date) -> int:
        return date.toordinal() - EPOCH_ORDINAL

    def span(first: dt.date, last: dt.date) -> list[int]:
        return list(range(day(first), day(last) + 1))

    def iso_week(week: int, days: int) -> list[int]:
        monday = dt.date.fromisocalendar(year, week, 1)
        return span(monday, monday + dt.timedelta(days=days - 1))

    easter = _easter(year)
    offset = dt.timedelta
    public = [
        dt.date(year, 1, 1),
        easter - offset(days=3),  # skjærtorsdag
        easter - offset(days=2),  # langfredag
        easter,
        easter + offset(days=1),
        dt.date(year, 5, 1),
        dt.date(year, 5, 17),
        easter + offset(days=39),  # Kristi himmelfartsdag
        easter + offset(days=49),
        easter + offset(days=50),
        dt.date(year, 12, 25),
        dt.date(year, 12, 26),
    ]
    public_days = [day(date) for date in public]
    # Nordland's school year, approximately: winter break in week 9, autumn break in
    # week 40, Easter week, summer from about 20 June to mid-August, Christmas.
    school_days = set(public_days)
    school_days.update(span(dt.date(year, 1, 1), dt.date(year, 1, 2)))
    school_days.update(iso_week(9, 5))
    school_days.update(iso_week(40, 5))
    school_days.update(span(easter - offset(days=6), easter + offset(days=1)))
    school_days.update(span(dt.date(year, 6, 20), dt.date(year, 8, 16)))
    school_days.update(span(dt.date(year, 12, 20), dt.date(year, 12, 31)))
    summer_closed = iso_week(28, 21)  # weeks 28-30
    return (
        np.array(sorted(public_days), dtype=np.int64),
        np.array(sorted(school_days), dtype=np.int64),
        np.array(summer_closed, dtype=np.int64),
    )


@dataclass(frozen=True, slots=True)
class Calendar:
    """Local-time facts about each instant: what people are doing depends on these."""

    hour: FloatArray  # local hour of day, 0..24
    weekday: IntArray  # 0 = Monday
    public_holiday: BoolArray
    school_holiday: BoolArray
    summer_closed: BoolArray
    year_phase: FloatArray  # days since 1 January (UTC), 0..365.24

    @property
    def free_day(self) -> BoolArray:
        """Sundays and public holidays: shops and offices shut, little traffic."""
        result: BoolArray = (self.weekday == 6) | self.public_holiday
        return result

    @property
    def working_day(self) -> BoolArray:
        result: BoolArray = (self.weekday < 5) & ~self.public_holiday
        return result


def local_calendar(t: FloatArray) -> Calendar:
    hours = np.floor(t / HOUR).astype(np.int64)
    offsets = np.empty(t.shape)
    chunks = hours // CHUNK_HOURS
    for chunk in np.unique(chunks):
        where = chunks == chunk
        offsets[where] = _utc_offsets(int(chunk))[hours[where] - chunk * CHUNK_HOURS]
    local = t + offsets
    local_day = np.floor(local / DAY).astype(np.int64)
    hour = (local - local_day * DAY) / HOUR
    public = np.zeros(t.shape, dtype=bool)
    school = np.zeros(t.shape, dtype=bool)
    closed = np.zeros(t.shape, dtype=bool)
    if t.size:
        first = dt.date.fromordinal(int(local_day.min()) + EPOCH_ORDINAL).year
        last = dt.date.fromordinal(int(local_day.max()) + EPOCH_ORDINAL).year
        for year in range(first, last + 1):
            public_days, school_days, closed_days = _holidays(year)
            public |= np.isin(local_day, public_days)
            school |= np.isin(local_day, school_days)
            closed |= np.isin(local_day, closed_days)
    return Calendar(
        hour=hour,
        weekday=(local_day + 3) % 7,  # 1970-01-01 was a Thursday
        public_holiday=public,
        school_holiday=school | public,
        summer_closed=closed,
        year_phase=year_phase(t),
    )


def year_phase(t: FloatArray) -> FloatArray:
    """Days since 1 January, as a smooth phase for seasonal cycles."""
    result: FloatArray = np.mod((t - _J2000) / DAY, YEAR_DAYS)
    return result


def winterness(phase: FloatArray) -> FloatArray:
    """1 in mid-January, 0 in mid-July."""
    result: FloatArray = 0.5 * (1.0 + np.cos(2 * np.pi * (phase - 15) / YEAR_DAYS))
    return result


def sin_solar_elevation(phase: FloatArray, solar_hour: FloatArray | float) -> FloatArray:
    declination = np.radians(23.44) * np.sin(2 * np.pi * (phase - 80) / YEAR_DAYS)
    hour_angle = np.radians(15.0) * (np.asarray(solar_hour) - 12.0)
    lat = math.radians(NARVIK_LAT)
    result: FloatArray = math.sin(lat) * np.sin(declination) + math.cos(lat) * np.cos(
        declination
    ) * np.cos(hour_angle)
    return result
