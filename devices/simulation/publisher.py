"""Simulated Narvik sensors: a vectorised signal model, payload encoders and an MQTT driver.

Until real sensors are connected, smartby shows itself with simulated ones that behave like
Narvik's (issue 4): air quality that follows rush hours, road dust on dry late-winter days
and winter inversions; buildings that use power on school days and heat with electricity
when it is cold; roads with commuter peaks and trucks; and a few devices with the faults
quality control is there to catch.

Three layers, each usable without the next:

* ``readings(spec, start, end, seed)`` — the signal model. Pure and vectorised with NumPy.
  Every random number is drawn from a generator keyed by (seed, device, quantity, block of
  sample indices), so a reading depends only on its own time, never on the window it was
  computed in: a live run that produces ten minutes at a time joins a backfill seamlessly,
  and an energy register continues across restarts without a false meter reset.
* ``simulated_messages(specs, start, end, seed, prefix)`` — the messages the devices would
  have sent, in time order, encoded as each device encodes them (SenML JSON, SenML CBOR or
  the plain JSON object; see ingest/decode.py).
* ``Simulator`` — publishes those messages through a real broker, one MQTT connection per
  device with its own credentials, either live (real time, optionally faster to catch up)
  or as a backfill as fast as the broker acknowledges.

All times are epoch seconds (UTC). Human activity (rush hours, school days, holidays)
follows local time in Europe/Oslo, with its daylight-saving shifts; sun and weather follow
solar time at Narvik.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import logging
import math
import select
import time as _time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

import cbor2
import numpy as np
import numpy.typing as npt
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import SmartbyError
from devices.catalogue import DeviceSpec

__all__ = [
    "LOCAL_TIMEZONE",
    "SUPPORTED_METRICS",
    "PublishReport",
    "SimulationError",
    "Simulator",
    "check_simulatable",
    "count_messages",
    "encode_payload",
    "readings",
    "simulated_messages",
    "status_topic",
    "telemetry_topic",
]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ProgressCallback = Callable[[int, int], None]

#: Where the simulated sensors live: activity follows this zone's clock.
LOCAL_TIMEZONE: Final = "Europe/Oslo"
NARVIK_LAT: Final = 68.44
NARVIK_LON: Final = 17.43

#: What each kind of simulated device can measure.
SUPPORTED_METRICS: Final[Mapping[str, frozenset[str]]] = {
    "air_quality": frozenset(
        {"pm25", "pm10", "no2", "o3", "so2", "temperature", "humidity", "pressure"}
    ),
    "energy": frozenset({"energy", "power"}),
    "traffic": frozenset({"vehicle_count", "heavy_vehicle_count", "speed"}),
}

# Units a device puts in its SenML records, as real devices of each kind do (RFC 8428 §12.1
# and RFC 8798 symbols). The register is sent as a Sum with u=W, so in W·s = J (§4.2).
_DEVICE_UNITS: Final[Mapping[str, str]] = {
    "pm25": "ug/m3",
    "pm10": "ug/m3",
    "no2": "ug/m3",
    "o3": "ug/m3",
    "so2": "ug/m3",
    "temperature": "Cel",
    "humidity": "%RH",
    "pressure": "hPa",
    "power": "W",
    "energy": "W",
    "vehicle_count": "count",
    "heavy_vehicle_count": "count",
    "speed": "km/h",
}
# Decimals a device reports; `readings` rounds to them, so what is stored is what it returns.
_DECIMALS: Final[Mapping[str, int]] = {
    "pm25": 1,
    "pm10": 1,
    "no2": 1,
    "o3": 1,
    "so2": 1,
    "temperature": 1,
    "humidity": 1,
    "pressure": 1,
    "power": 0,
    "energy": 3,  # kWh with Wh resolution, as a meter's register
    "vehicle_count": 0,
    "heavy_vehicle_count": 0,
    "speed": 1,
}
_JOULES_PER_WH: Final = 3600

_DAY: Final = 86_400
_HOUR: Final = 3_600
_YEAR_DAYS: Final = 365.2422
_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()
_J2000: Final = 946_684_800  # 2000-01-01 00:00 UTC, the origin of the year phase

_BLOCK: Final = 4096  # random draws per generator; keyed by index // _BLOCK
_WEATHER_CHUNK: Final = 2048  # hours of weather computed (and cached) at a time
_WEATHER_WARMUP: Final = 24  # hours before a chunk needed by the causal means


class SimulationError(SmartbyError):
    """The simulator cannot do what was asked; the message says which device and why."""


# ------------------------------------------------------------------ deterministic draws


def _key(seed: int, *parts: object) -> int:
    """A 64-bit key for one random stream: (seed, device, quantity, …)."""
    text = "\x1f".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _draws(key: int, index: IntArray, kind: str) -> FloatArray:
    """Standard normal (``kind="normal"``) or uniform [0, 1) draws, one per index.

    The draw for an index depends only on the key and the index: each block of `_BLOCK`
    indices has its own generator seeded from (key, block). That is what makes a reading
    independent of the window it is computed in.
    """
    out = np.empty(index.shape, dtype=np.float64)
    if index.size == 0:
        return out
    blocks = index // _BLOCK
    for block in np.unique(blocks):
        rng = np.random.default_rng([key, int(block) + (1 << 40), 0 if kind == "normal" else 1])
        values = rng.standard_normal(_BLOCK) if kind == "normal" else rng.random(_BLOCK)
        where = blocks == block
        out[where] = values[index[where] - block * _BLOCK]
    return out


def _ar1(key: int, first: int, count: int, tau_steps: float) -> FloatArray:
    """A stationary AR(1) series with unit variance over indices ``first … first+count-1``.

    Computed as the AR(1) impulse response truncated after six time constants (weight below
    0.25 %), so each value is a fixed weighted sum of its own past innovations: no state to
    carry from one window to the next. The taps are added one at a time over whole arrays,
    the same order for every element, so a value is bit-identical whatever the window.
    """
    if count <= 0:
        return np.empty(0)
    if tau_steps <= 0.2:
        return _draws(key, np.arange(first, first + count, dtype=np.int64), "normal")
    phi = math.exp(-1.0 / tau_steps)
    taps = max(1, math.ceil(6 * tau_steps))
    shocks = _draws(key, np.arange(first - taps + 1, first + count, dtype=np.int64), "normal")
    out = np.zeros(count)
    weight = 1.0
    for lag in range(taps):
        start = taps - 1 - lag
        out += weight * shocks[start : start + count]
        weight *= phi
    out *= math.sqrt(1.0 - phi * phi)
    return out


def _poisson(key: int, index: IntArray, mean: FloatArray) -> FloatArray:
    """Poisson counts around ``mean`` by inversion of one keyed uniform per index (exact
    below a mean of 30, normal approximation with continuity correction above)."""
    uniform = _draws(key, index, "uniform")
    counts = np.zeros(mean.shape)
    small = mean < 30
    if small.any():
        lam = mean[small]
        u = uniform[small]
        term = np.exp(-lam)
        cdf = term.copy()
        k = np.zeros(lam.shape)
        for n in range(1, 90):
            below = u > cdf
            if not below.any():
                break
            k += below
            term = term * lam / n
            cdf += term
        counts[small] = k
    large = ~small
    if large.any():
        z = _draws(key ^ 0x5F5F5F5F, index[large], "normal")
        counts[large] = np.maximum(np.floor(mean[large] + np.sqrt(mean[large]) * z + 0.5), 0)
    return counts


def _logistic(x: FloatArray) -> FloatArray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _bump(x: FloatArray, centre: float, width: float) -> FloatArray:
    return np.exp(-0.5 * ((x - centre) / width) ** 2)


def _window(hour: FloatArray, opens: float, closes: float, ramp: float = 0.35) -> FloatArray:
    """0..1: a smooth 'open between these local hours' (people do not arrive at once)."""
    return _logistic((hour - opens) / ramp) - _logistic((hour - closes) / ramp)


# ------------------------------------------------------------------------- calendar


@lru_cache(maxsize=1)
def _zone() -> ZoneInfo:
    return ZoneInfo(LOCAL_TIMEZONE)


@lru_cache(maxsize=64)
def _utc_offsets(chunk: int) -> FloatArray:
    """UTC offset (s) of local time for every hour of a chunk; DST changes on the hour."""
    zone = _zone()
    first = chunk * _WEATHER_CHUNK
    offsets = np.empty(_WEATHER_CHUNK)
    for i in range(_WEATHER_CHUNK):
        moment = dt.datetime.fromtimestamp((first + i) * _HOUR, zone)
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
        return date.toordinal() - _EPOCH_ORDINAL

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
class _Calendar:
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


def _calendar(t: FloatArray) -> _Calendar:
    hours = np.floor(t / _HOUR).astype(np.int64)
    offsets = np.empty(t.shape)
    chunks = hours // _WEATHER_CHUNK
    for chunk in np.unique(chunks):
        where = chunks == chunk
        offsets[where] = _utc_offsets(int(chunk))[hours[where] - chunk * _WEATHER_CHUNK]
    local = t + offsets
    local_day = np.floor(local / _DAY).astype(np.int64)
    hour = (local - local_day * _DAY) / _HOUR
    public = np.zeros(t.shape, dtype=bool)
    school = np.zeros(t.shape, dtype=bool)
    closed = np.zeros(t.shape, dtype=bool)
    if t.size:
        first = dt.date.fromordinal(int(local_day.min()) + _EPOCH_ORDINAL).year
        last = dt.date.fromordinal(int(local_day.max()) + _EPOCH_ORDINAL).year
        for year in range(first, last + 1):
            public_days, school_days, closed_days = _holidays(year)
            public |= np.isin(local_day, public_days)
            school |= np.isin(local_day, school_days)
            closed |= np.isin(local_day, closed_days)
    return _Calendar(
        hour=hour,
        weekday=(local_day + 3) % 7,  # 1970-01-01 was a Thursday
        public_holiday=public,
        school_holiday=school | public,
        summer_closed=closed,
        year_phase=_year_phase(t),
    )


def _year_phase(t: FloatArray) -> FloatArray:
    """Days since 1 January, as a smooth phase for seasonal cycles."""
    result: FloatArray = np.mod((t - _J2000) / _DAY, _YEAR_DAYS)
    return result


def _winterness(phase: FloatArray) -> FloatArray:
    """1 in mid-January, 0 in mid-July."""
    result: FloatArray = 0.5 * (1.0 + np.cos(2 * np.pi * (phase - 15) / _YEAR_DAYS))
    return result


def _sin_solar_elevation(phase: FloatArray, solar_hour: FloatArray | float) -> FloatArray:
    declination = np.radians(23.44) * np.sin(2 * np.pi * (phase - 80) / _YEAR_DAYS)
    hour_angle = np.radians(15.0) * (np.asarray(solar_hour) - 12.0)
    lat = math.radians(NARVIK_LAT)
    result: FloatArray = math.sin(lat) * np.sin(declination) + math.cos(lat) * np.cos(
        declination
    ) * np.cos(hour_angle)
    return result


# -------------------------------------------------------------------------- weather

_WEATHER_FIELDS: Final = (
    "temperature",
    "temperature_12h",
    "wind",
    "wet",
    "wet_24h",
    "pressure",
    "regional",
    "ship",
    "inversion",
    "sun",
)


@lru_cache(maxsize=256)
def _weather_chunk(seed: int, chunk: int) -> Mapping[str, FloatArray]:
    """Town-wide hourly weather for one chunk of hours: every station shares it, so a cold,
    calm day raises pollution everywhere at once, as an inversion does."""
    first = chunk * _WEATHER_CHUNK - _WEATHER_WARMUP
    count = _WEATHER_CHUNK + _WEATHER_WARMUP
    t = np.arange(first, first + count, dtype=np.float64) * _HOUR
    phase = _year_phase(t)
    winter = _winterness(phase)
    solar_hour = np.mod(t / _HOUR + NARVIK_LON / 15.0, 24.0)
    sun = np.maximum(_sin_solar_elevation(phase, solar_hour), 0.0)
    noon = np.maximum(_sin_solar_elevation(phase, 12.0), 0.0)

    def ar(name: str, tau_hours: float) -> FloatArray:
        return _ar1(_key(seed, "weather", name), first, count, tau_hours)

    # Narvik's climate: January about -4 °C, July about +13.5 °C; no diurnal cycle in the
    # polar night, a few degrees under the midnight sun; synoptic swings larger in winter.
    climate = 4.6 - 8.9 * np.cos(2 * np.pi * (phase - 22) / _YEAR_DAYS)
    diurnal = (0.4 + 3.0 * noon) * np.cos(2 * np.pi * (solar_hour - 14.5) / 24.0)
    anomaly = (2.5 + 2.0 * winter) * ar("temperature", 60)
    wind = 4.0 * (1.0 + 0.2 * winter) * np.exp(0.5 * ar("wind", 18) - 0.125)
    wet = _logistic((ar("precipitation", 14) - 0.25) / 0.3)
    # Inversions: winter, calm, colder than normal, clear skies. Cold air pools in the
    # fjord and holds traffic and wood smoke near the ground.
    calm = _logistic((1.8 - wind) / 0.4)
    cold = _logistic((-anomaly - 1.0) / 1.0)
    inversion = np.clip(winter**1.5 * calm * (0.35 + 0.65 * cold) * (1.0 - 0.8 * wet), 0, 1)
    temperature = climate + diurnal + anomaly - 2.5 * inversion

    def trailing_mean(x: FloatArray, hours: int) -> FloatArray:
        total = np.concatenate(([0.0], np.cumsum(x)))
        out = np.empty_like(x)
        out[hours:] = (total[hours + 1 :] - total[1 : count - hours + 1]) / hours
        out[:hours] = x[:hours]
        return out

    fields = {
        "temperature": temperature,
        "temperature_12h": trailing_mean(temperature, 12),
        "wind": wind,
        "wet": wet,
        "wet_24h": trailing_mean(wet, 24),
        "pressure": 1009.0 + 9.0 * ar("pressure", 72) - 6.0 * (wet - 0.4),
        "regional": np.exp(0.55 * ar("regional", 48) - 0.15),  # long-range transport
        "ship": _logistic((ar("ship", 20) - 0.9) / 0.15),  # ore carriers at berth
        "inversion": inversion,
        "sun": sun,
    }
    result: dict[str, FloatArray] = {}
    for name, values in fields.items():
        kept = np.ascontiguousarray(values[_WEATHER_WARMUP:])
        kept.flags.writeable = False
        result[name] = kept
    return result


def _weather(seed: int, t: FloatArray) -> dict[str, FloatArray]:
    """Weather at instants ``t``, interpolated linearly between the hourly values."""
    if t.size == 0:
        return {name: np.empty(0) for name in _WEATHER_FIELDS}
    first_hour = math.floor(float(t.min()) / _HOUR)
    last_hour = math.floor(float(t.max()) / _HOUR) + 1
    chunks = range(first_hour // _WEATHER_CHUNK, last_hour // _WEATHER_CHUNK + 1)
    parts = [_weather_chunk(seed, chunk) for chunk in chunks]
    knots = np.arange(
        chunks[0] * _WEATHER_CHUNK, (chunks[-1] + 1) * _WEATHER_CHUNK, dtype=np.float64
    )
    knots *= _HOUR
    return {
        name: np.interp(t, knots, np.concatenate([part[name] for part in parts]))
        for name in _WEATHER_FIELDS
    }


# ------------------------------------------------------------------------- traffic


@lru_cache(maxsize=8)
def _shape_norms(road_class: str) -> tuple[float, float]:
    """Means over a day of the working-day and free-day curves, to normalise them."""
    hour = np.linspace(0, 24, 24 * 60, endpoint=False)
    work = _raw_shape(hour, road_class, working=True)
    free = _raw_shape(hour, road_class, working=False)
    return float(work.mean()), float(free.mean())


def _raw_shape(hour: FloatArray, road_class: str, *, working: bool) -> FloatArray:
    if working:
        # commuter peaks around 07:40 and 15:45, a working-day plateau, an evening tail
        commuter = (
            0.03
            + 1.0 * _bump(hour, 7.65, 0.7)
            + 0.55 * _window(hour, 8.5, 15.0, 0.6)
            + 1.3 * _bump(hour, 15.75, 1.15)
            + 0.4 * _window(hour, 17.0, 21.5, 0.7)
        )
        through = 0.06 + _bump(hour, 13.0, 4.0)  # freight and long-distance trips
        shopping = _bump(hour, 12.5, 2.0)
    else:
        commuter = 0.03 + 0.95 * _bump(hour, 13.5, 3.2) + 0.2 * _window(hour, 9.0, 22.0, 0.7)
        through = 0.06 + _bump(hour, 14.0, 4.0)
        shopping = _bump(hour, 13.0, 2.5)
    if road_class == "european_road":
        result: FloatArray = 0.65 * commuter + 0.35 * through
    elif road_class == "county_road":
        result = 0.85 * commuter + 0.15 * through
    else:
        result = commuter + 0.3 * shopping
    return result


# Traffic on a day relative to an average working day (Mon-Thu); Friday is busiest.
_DAY_FACTOR: Final = (1.0, 1.0, 1.0, 1.0, 1.07, 0.82, 0.66)
_WEEK_MEAN: Final = sum(_DAY_FACTOR) / 7


def _traffic_intensity(cal: _Calendar, road_class: str) -> FloatArray:
    """Traffic relative to the annual daily mean (so ``aadt × intensity / 24`` is vehicles
    an hour): working-day commuter peaks, a midday hump on free days, summer tourism on
    the European roads."""
    work_norm, free_norm = _shape_norms(road_class)
    working = cal.weekday < 5
    working &= ~cal.public_holiday
    shape = np.where(
        working,
        _raw_shape(cal.hour, road_class, working=True) / work_norm,
        _raw_shape(cal.hour, road_class, working=False) / free_norm,
    )
    factor = np.where(cal.public_holiday, _DAY_FACTOR[6], np.asarray(_DAY_FACTOR)[cal.weekday])
    summer = _bump(cal.year_phase, 200.0, 30.0)
    season = 1.0 + (0.18 if road_class == "european_road" else -0.05) * (summer - 0.2)
    result: FloatArray = shape * factor * season / _WEEK_MEAN
    return result


def _heavy_intensity(cal: _Calendar) -> FloatArray:
    """Heavy vehicles relative to their working-day mean: flatter than cars (trucks run at
    night too), and far fewer at weekends."""
    hour = np.linspace(0, 24, 24 * 60, endpoint=False)
    norm = float((0.35 + _bump(hour, 12.0, 4.5)).mean())
    shape = (0.35 + _bump(cal.hour, 12.0, 4.5)) / norm
    factor = np.where(cal.weekday == 5, 0.5, 1.0)
    factor = np.where(cal.free_day, 0.3, factor)
    result: FloatArray = shape * factor
    return result


# ----------------------------------------------------------------- device sampling


@dataclass(frozen=True, slots=True)
class _Samples:
    """The sampling instants of one device over a window, before faults."""

    index: IntArray  # absolute sample number: the key of every random draw
    time: FloatArray  # true measurement time (a counter: start of its period)
    sent: FloatArray  # when the message leaves the device

    @property
    def span(self) -> tuple[int, int]:
        """(first sample number, count): the samples are consecutive."""
        return (int(self.index[0]), int(self.index.size)) if self.index.size else (0, 0)


def _phase(spec: DeviceSpec) -> int:
    """Devices do not all report on the minute: a fixed offset per device, from its id.
    Traffic counters aggregate over clock-aligned quarter hours, so they have none."""
    if spec.kind == "traffic":
        return 0
    return _key(0, "phase", spec.id) % spec.interval_s


def _samples(spec: DeviceSpec, start: float, end: float) -> _Samples:
    interval = spec.interval_s
    phase = _phase(spec)
    first = math.ceil((start - phase) / interval)
    last = math.ceil((end - phase) / interval)  # exclusive
    index = np.arange(first, max(first, last), dtype=np.int64)
    times = index.astype(np.float64) * interval + phase
    # A counter reports its period when the period is over.
    sent = times + interval if spec.kind == "traffic" else times
    return _Samples(index, times, sent)


def _knob(spec: DeviceSpec, name: str, default: float) -> float:
    value = spec.simulation.get(name, default)
    return float(value) if isinstance(value, int | float) else default


# --------------------------------------------------------------------- air quality


def _air_quality(spec: DeviceSpec, seed: int, samples: _Samples) -> dict[str, FloatArray]:
    t = samples.time
    first, count = samples.span
    cal = _calendar(t)
    wx = _weather(seed, t)
    roadside = spec.site.kind == "roadside"
    aadt = _knob(spec, "traffic_aadt", 8000.0 if roadside else 4000.0)
    exposure = _knob(spec, "traffic_exposure", 1.0 if roadside else 0.25)
    wood = _knob(spec, "wood_burning", 0.5 if roadside else 0.7)
    harbour = bool(spec.simulation.get("harbour", False))
    offset = _knob(spec, "temperature_offset", 0.3 if roadside else 0.1)
    steps = 60.0 / spec.interval_s  # samples per minute

    def noise(name: str, tau_minutes: float) -> FloatArray:
        return _ar1(_key(seed, spec.id, name), first, count, tau_minutes * steps)

    winter = _winterness(cal.year_phase)
    traffic = _traffic_intensity(cal, "town_street") * (aadt / 9000.0) * exposure
    # Dilution: weaker wind and an inversion keep emissions near the ground.
    dispersion = (1.0 + 2.5 * wx["inversion"]) * (3.0 / (wx["wind"] + 1.0)) ** 0.6

    local_no2 = 20.0 * traffic * dispersion
    no2 = (4.0 + 3.0 * winter + local_no2) * np.exp(0.15 * noise("no2", 20) - 0.011)
    no2 += 0.8 * noise("no2-white", 0)

    # Road dust: studded tyres grind the asphalt all winter; the dust lifts when the roads
    # dry up in late winter (February-April), in the traffic and the wind.
    dust_season = _bump(cal.year_phase, 85.0, 24.0) + 0.12 * winter
    road_dry = (1.0 - wx["wet_24h"]) ** 2 * _logistic((wx["temperature"] + 4.0) / 1.5)
    suspension = 0.7 + 0.08 * wx["wind"]
    dust = 85.0 * traffic * dust_season * road_dry * suspension * np.sqrt(dispersion)
    # Wood stoves on cold evenings, and more at weekends.
    heating_need = _logistic((5.0 - wx["temperature"]) / 3.0)
    evening = _bump(cal.hour, 19.5, 2.2) + 0.4 * _bump(cal.hour, 7.5, 1.2)
    weekend = np.where(cal.weekday >= 5, 1.3, 1.0)
    smoke = 9.0 * wood * heating_need * evening * weekend * dispersion
    pm_noise = np.exp(0.2 * noise("pm", 30) - 0.02)
    fine = (2.5 * wx["regional"] + smoke + 0.06 * local_no2) * pm_noise
    pm25 = fine + 0.1 * dust * pm_noise + 0.3 * noise("pm25-white", 0)
    sea_salt = 0.6 * np.maximum(wx["wind"] - 6.0, 0.0)
    coarse = (2.5 + sea_salt + 0.9 * dust) * np.exp(0.2 * noise("pm10", 30) - 0.02)
    pm10 = pm25 + coarse + 0.5 * noise("pm10-white", 0)

    # Ozone: a spring maximum, sunny afternoons, eaten by traffic NO near roads and
    # under inversions.
    o3 = (
        52.0
        + 20.0 * np.cos(2 * np.pi * (cal.year_phase - 110) / _YEAR_DAYS)
        + 12.0 * wx["sun"] * (1.0 - winter)
        - 0.6 * local_no2
        - 20.0 * wx["inversion"]
        + 5.0 * noise("o3", 180)
    )
    so2 = 0.6 + 0.2 * np.abs(noise("so2", 60))
    if harbour:
        so2 = so2 + 12.0 * wx["ship"] * np.sqrt(dispersion) * np.exp(0.3 * noise("ship", 40))

    temperature = wx["temperature"] + offset + 0.25 * noise("temperature", 40)
    diurnal = np.cos(2 * np.pi * (np.mod(t / _HOUR + NARVIK_LON / 15.0, 24.0) - 14.5) / 24.0)
    humidity = (
        80.0
        + 6.0 * winter
        - 9.0 * (1.0 - winter) * diurnal
        + 14.0 * (wx["wet"] - 0.4)
        + 4.0 * noise("humidity", 360)
    )
    pressure = wx["pressure"] + 0.1 * noise("pressure", 0)

    return {
        "no2": np.maximum(no2, 0.5),
        "pm25": np.maximum(pm25, 0.3),
        "pm10": np.maximum(pm10, pm25 + 0.2),
        "o3": np.maximum(o3, 2.0),
        "so2": np.maximum(so2, 0.1),
        "temperature": temperature,
        "humidity": np.clip(humidity, 15.0, 100.0),
        "pressure": pressure,
    }


# -------------------------------------------------------------------------- energy


@dataclass(frozen=True, slots=True)
class _Profile:
    """How a building type uses power, per m² of heated floor."""

    base: float  # W/m² always on: ventilation, servers, fridges, pool pumps
    occupied: float  # W/m² more when in use: lights, equipment, kitchens
    heating: float  # W/m² per kelvin below 17 °C outside, if heated only electrically
    setback: float  # share of the heating kept when the building is empty


_PROFILES: Final[Mapping[str, _Profile]] = {
    "school": _Profile(base=2.0, occupied=12.0, heating=0.5, setback=0.55),
    "kindergarten": _Profile(base=3.0, occupied=12.0, heating=0.6, setback=0.6),
    "office": _Profile(base=4.0, occupied=12.0, heating=0.5, setback=0.65),
    "library": _Profile(base=3.0, occupied=10.0, heating=0.5, setback=0.8),
    "care_home": _Profile(base=9.0, occupied=6.0, heating=0.6, setback=1.0),
    "swimming_hall": _Profile(base=45.0, occupied=20.0, heating=0.8, setback=0.95),
    "fire_station": _Profile(base=6.0, occupied=5.0, heating=0.5, setback=0.9),
    "culture_house": _Profile(base=4.0, occupied=14.0, heating=0.5, setback=0.8),
    "sports_hall": _Profile(base=3.0, occupied=12.0, heating=0.45, setback=0.75),
}

#: Outdoor temperature above which a Norwegian building needs no heating.
_BALANCE_TEMPERATURE: Final = 17.0
#: Meters without the meter_reset fault still get reset now and then (replaced, or
#: reprogrammed): about once in six years.
_RARE_RESET_PER_DAY: Final = 1.0 / (6 * 365)
#: A meter with the meter_reset fault falls back to zero every this many days.
_FAULTY_RESET_EVERY_DAYS: Final = 4
_DEFAULT_INSTALLED: Final = dt.date(2019, 1, 1)  # the AMS smart-meter roll-out


@dataclass(frozen=True, slots=True)
class _Building:
    """The hashable part of an energy device that its register depends on (cache key)."""

    device_id: str
    building_type: str
    floor_area_m2: float
    electric_heating: float
    installed: float  # epoch s
    start_kwh: float
    faulty: bool  # reset every few days, not once in years


def _building(spec: DeviceSpec) -> _Building:
    installed = spec.simulation.get("installed", _DEFAULT_INSTALLED)
    if isinstance(installed, str):
        installed = dt.date.fromisoformat(installed)
    if not isinstance(installed, dt.date):
        installed = _DEFAULT_INSTALLED
    building_type = spec.simulation.get("building_type", "office")
    return _Building(
        device_id=spec.id,
        building_type=building_type if building_type in _PROFILES else "office",
        floor_area_m2=_knob(spec, "floor_area_m2", 2000.0),
        electric_heating=_knob(spec, "electric_heating", 1.0),
        installed=float((installed.toordinal() - _EPOCH_ORDINAL) * _DAY),
        start_kwh=_knob(spec, "register_start_kwh", 0.0),
        faulty=spec.fault == "meter_reset",
    )


def _occupancy(building_type: str, cal: _Calendar) -> FloatArray:
    """0..1: how much the building is in use at each instant (local opening hours)."""
    hour, weekday = cal.hour, cal.weekday
    working = cal.working_day
    if building_type == "school":
        term = working & ~cal.school_holiday
        lessons = _window(hour, 7.5, 16.0) + 0.2 * _window(hour, 17.5, 21.0)
        staff_only = 0.08 * _window(hour, 8.0, 15.0)
        result = np.where(term, lessons, np.where(working, staff_only, 0.0))
    elif building_type == "kindergarten":
        result = np.where(working & ~cal.summer_closed, _window(hour, 7.0, 16.75), 0.0)
    elif building_type == "office":
        result = np.where(working, _window(hour, 7.5, 16.0) + 0.1 * _window(hour, 16.0, 19.0), 0.0)
    elif building_type == "library":
        result = np.where(weekday < 4, _window(hour, 10.0, 19.0), 0.0)
        result = np.where(weekday == 4, _window(hour, 10.0, 16.0), result)
        result = np.where(weekday == 5, _window(hour, 11.0, 15.0), result)
        result = np.where(cal.public_holiday, 0.0, result)
    elif building_type == "care_home":
        result = 0.55 + 0.45 * _window(hour, 7.0, 20.0) + 0.2 * _bump(hour, 11.5, 1.0)
    elif building_type == "swimming_hall":
        result = np.where(weekday < 5, _window(hour, 6.75, 21.0), _window(hour, 10.0, 17.0))
        result = np.where(cal.public_holiday | cal.summer_closed, 0.0, result)
    elif building_type == "fire_station":
        result = 0.6 + 0.4 * np.where(working, _window(hour, 7.5, 15.5), 0.0)
    elif building_type == "culture_house":
        events = np.isin(weekday, (3, 4, 5))
        result = np.where(weekday < 5, 0.35 * _window(hour, 9.0, 16.0), 0.0)
        result = result + np.where(events, 0.9 * _window(hour, 18.0, 22.5), 0.0)
        result = np.where(weekday == 6, 0.6 * _window(hour, 12.0, 17.0), result)
    else:  # sports_hall
        weekday_use = 0.7 * _window(hour, 8.0, 15.0) + _window(hour, 16.0, 22.5)
        result = np.where(working, weekday_use, 0.7 * _window(hour, 9.0, 18.0))
        result = np.where(cal.public_holiday, 0.0, result)
    out: FloatArray = np.clip(result, 0.0, 1.0)
    return out


def _building_power(building: _Building, cal: _Calendar, temperature_12h: FloatArray) -> FloatArray:
    """Mean electric power (W) of the building, without noise: base load, use, heating.

    Heating follows the outdoor temperature of the last twelve hours (a building's thermal
    mass), turned down when the building is empty.
    """
    profile = _PROFILES[building.building_type]
    occupancy = _occupancy(building.building_type, cal)
    cold = np.maximum(_BALANCE_TEMPERATURE - temperature_12h, 0.0)
    heated = profile.setback + (1.0 - profile.setback) * np.minimum(1.0, 1.5 * occupancy)
    per_m2 = (
        profile.base
        + profile.occupied * occupancy
        + profile.heating * building.electric_heating * cold * heated
    )
    result: FloatArray = building.floor_area_m2 * per_m2
    return result


@lru_cache(maxsize=512)
def _hourly_kwh(seed: int, building: _Building, chunk: int) -> FloatArray:
    """kWh used in each hour of a chunk (zero before installation): what the register
    integrates. Power is taken at the middle of each hour."""
    hours = np.arange(chunk * _WEATHER_CHUNK, (chunk + 1) * _WEATHER_CHUNK, dtype=np.int64)
    mid = (hours.astype(np.float64) + 0.5) * _HOUR
    weather = _weather_chunk(seed, chunk)
    power = _building_power(building, _calendar(mid), np.asarray(weather["temperature_12h"]))
    kwh = power / 1000.0
    kwh[hours * _HOUR < building.installed] = 0.0
    kwh.flags.writeable = False
    return kwh


@lru_cache(maxsize=4096)
def _kwh_before(seed: int, building: _Building, chunk: int) -> float:
    """Energy used from installation to the start of ``chunk`` (call in ascending chunk
    order, as `_integral_kwh` does, so each step finds the previous one cached)."""
    if chunk <= math.floor(building.installed / _HOUR) // _WEATHER_CHUNK:
        return 0.0
    return _kwh_before(seed, building, chunk - 1) + float(
        _hourly_kwh(seed, building, chunk - 1).sum()
    )


def _integral_kwh(seed: int, building: _Building, t: FloatArray) -> FloatArray:
    """Energy used from installation to each instant: the register without resets."""
    out = np.zeros(t.shape)
    hours = np.floor(t / _HOUR).astype(np.int64)
    chunks = hours // _WEATHER_CHUNK
    first = math.floor(building.installed / _HOUR) // _WEATHER_CHUNK
    for chunk in np.unique(chunks).tolist():
        for earlier in range(first, chunk):
            _kwh_before(seed, building, earlier)  # warm the cache bottom-up: no deep recursion
        kwh = _hourly_kwh(seed, building, chunk)
        before = np.concatenate(([0.0], np.cumsum(kwh)[:-1]))
        where = chunks == chunk
        position = hours[where] - chunk * _WEATHER_CHUNK
        fraction = t[where] / _HOUR - hours[where]
        out[where] = (
            _kwh_before(seed, building, chunk) + before[position] + kwh[position] * fraction
        )
    return out


def _register_kwh(seed: int, building: _Building, t: FloatArray) -> FloatArray:
    """The meter's register: the integral of power since installation, back to zero at
    each reset (a decrease is how ingest and QC recognise a reset)."""
    if t.size == 0:
        return np.empty(0)
    integral = _integral_kwh(seed, building, t)
    first_day = math.floor(building.installed / _DAY)
    last_day = math.floor(float(t.max()) / _DAY)
    days = np.arange(first_day, last_day + 1, dtype=np.int64)
    chance = _draws(_key(seed, building.device_id, "reset"), days, "uniform")
    when = _draws(_key(seed, building.device_id, "reset-time"), days, "uniform")
    if building.faulty:
        chosen = days % _FAULTY_RESET_EVERY_DAYS == (
            _key(seed, building.device_id) % _FAULTY_RESET_EVERY_DAYS
        )
    else:
        chosen = chance < _RARE_RESET_PER_DAY
    resets = (days[chosen] * _DAY).astype(np.float64) + when[chosen] * _DAY
    register = building.start_kwh + integral
    if resets.size:
        at_reset = _integral_kwh(seed, building, resets)
        last = np.searchsorted(resets, t, side="right") - 1
        after = last >= 0
        register = np.where(after, integral - at_reset[np.maximum(last, 0)], register)
    result: FloatArray = np.maximum(register, 0.0)
    return result


def _energy(spec: DeviceSpec, seed: int, samples: _Samples) -> dict[str, FloatArray]:
    t = samples.time
    first, count = samples.span
    building = _building(spec)
    cal = _calendar(t)
    wx = _weather(seed, t)
    steps = 60.0 / spec.interval_s
    power = _building_power(building, cal, wx["temperature_12h"])
    wobble = _ar1(_key(seed, spec.id, "power"), first, count, 30 * steps)
    jitter = _draws(_key(seed, spec.id, "power-white"), samples.index, "normal")
    power = power * (1.0 + 0.03 * wobble + 0.01 * jitter)
    return {
        "power": np.maximum(power, 0.0),
        "energy": _register_kwh(seed, building, t),
    }


# ------------------------------------------------------------------------- traffic


def _traffic(spec: DeviceSpec, seed: int, samples: _Samples) -> dict[str, FloatArray]:
    interval = spec.interval_s
    middle = samples.time + interval / 2
    cal = _calendar(middle)
    wx = _weather(seed, middle)
    road_class = str(spec.simulation.get("road_class", "county_road"))
    aadt = _knob(spec, "aadt", 5000.0)
    limit = _knob(spec, "speed_limit_kmh", 60.0)
    heavy_share = _knob(spec, "heavy_share", 0.08)
    periods = interval / _DAY

    # Heavy snowfall keeps some people at home.
    snowing = wx["wet"] * _logistic((0.5 - wx["temperature"]) / 1.0)
    expected = aadt * periods * _traffic_intensity(cal, road_class) * (1.0 - 0.1 * snowing)
    expected_heavy = np.minimum(
        aadt * heavy_share * periods * _heavy_intensity(cal), 0.6 * expected
    )
    heavy = _poisson(_key(seed, spec.id, "heavy"), samples.index, expected_heavy)
    light = _poisson(_key(seed, spec.id, "light"), samples.index, expected - expected_heavy)
    vehicles = heavy + light

    # Speed: a little over the limit on open roads, under it in town; slower when the road
    # fills up, in winter, and much slower on a wet road near freezing.
    free_flow = {"european_road": 1.03, "county_road": 1.0}.get(road_class, 0.92) * limit
    capacity = {"european_road": 1800.0, "county_road": 1200.0}.get(road_class, 1100.0)
    load = vehicles / (capacity * interval / _HOUR)
    winter = _winterness(cal.year_phase)
    slippery = wx["wet"] * _logistic((1.0 - wx["temperature"]) / 1.0)
    mean_speed = free_flow * (1.0 - 0.35 * load**2) * (1.0 - 0.04 * winter - 0.12 * slippery)
    scatter = _draws(_key(seed, spec.id, "speed"), samples.index, "normal")
    speed = mean_speed + scatter * (5.0 / np.sqrt(vehicles + 1.0) + 0.5)
    # No vehicles, no mean speed: the counter leaves the field out.
    speed = np.where(vehicles > 0, np.maximum(speed, 5.0), np.nan)
    return {"vehicle_count": vehicles, "heavy_vehicle_count": heavy, "speed": speed}


# -------------------------------------------------------------------------- faults

_SPIKE_CHANCE: Final = 0.003
_SPIKE_FLOOR: Final[Mapping[str, float]] = {
    "pm25": 25.0,
    "pm10": 40.0,
    "no2": 40.0,
    "o3": 60.0,
    "so2": 10.0,
    "power": 0.0,
    "vehicle_count": 20.0,
    "heavy_vehicle_count": 5.0,
}
_FLAT_LINE_CHANCE: Final = 0.6  # per day
_FLAT_LINE_HOURS: Final = (3.0, 10.0)
_DROPOUT_CHANCE: Final = 0.7  # per day
_DROPOUT_HOURS: Final = (1.0, 8.0)
_LOST_MESSAGE_CHANCE: Final = 0.02
_DEFAULT_SKEW_S: Final = -5400.0
#: History a flat line may reach back from the window start: its frozen value is there.
_FAULT_LOOKBACK_S: Final = 12 * _HOUR


def _stretches(
    seed: int,
    spec: DeviceSpec,
    name: str,
    start: float,
    end: float,
    chance: float,
    hours: tuple[float, float],
) -> tuple[FloatArray, FloatArray]:
    """(begins, ends) of the fault stretches that touch [start, end): at most one a day,
    starting at a random time of that day."""
    days = np.arange(math.floor(start / _DAY) - 1, math.floor(end / _DAY) + 1, dtype=np.int64)
    happens = _draws(_key(seed, spec.id, name), days, "uniform") < chance
    begin_in_day = _draws(_key(seed, spec.id, name, "begin"), days, "uniform") * _DAY
    length = hours[0] + (hours[1] - hours[0]) * _draws(
        _key(seed, spec.id, name, "length"), days, "uniform"
    )
    begins = days[happens] * float(_DAY) + begin_in_day[happens]
    ends = begins + length[happens] * _HOUR
    return begins, ends


def _inside(t: FloatArray, begins: FloatArray, ends: FloatArray) -> tuple[BoolArray, IntArray]:
    """Whether each instant falls in a stretch, and which stretch."""
    which = np.searchsorted(begins, t, side="right") - 1
    inside = (
        (which >= 0) & (t < ends[np.maximum(which, 0)])
        if begins.size
        else np.zeros(t.shape, dtype=bool)
    )
    return inside, which


def _apply_faults(
    spec: DeviceSpec, seed: int, samples: _Samples, values: dict[str, FloatArray]
) -> tuple[BoolArray, FloatArray]:
    """Apply the device's fault to ``values`` in place; return which samples are sent and
    the time the device writes into each payload."""
    fault = spec.fault
    t = samples.time
    keep = np.ones(t.shape, dtype=bool)
    stamped = t.copy()
    if fault == "spike":
        for metric, series in values.items():
            if metric == "energy":
                continue  # a register is a counter: a glitch there looks like a reset
            hit = _draws(_key(seed, spec.id, "spike", metric), samples.index, "uniform")
            spiking = hit < _SPIKE_CHANCE
            if metric == "temperature":
                # 85 °C is what a common digital thermometer reads after a brown-out
                series[spiking] = 85.0
            elif metric in _SPIKE_FLOOR:
                size = 8.0 + 20.0 * _draws(
                    _key(seed, spec.id, "spike-size", metric), samples.index, "uniform"
                )
                series[spiking] = np.maximum(series[spiking], _SPIKE_FLOOR[metric]) * size[spiking]
    elif fault == "flat_line":
        begins, ends = _stretches(
            seed,
            spec,
            "flat",
            float(t[0]) if t.size else 0.0,
            float(t[-1]) + 1 if t.size else 0.0,
            _FLAT_LINE_CHANCE,
            _FLAT_LINE_HOURS,
        )
        inside, which = _inside(t, begins, ends)
        if inside.any():
            # every reading of a stretch repeats the one taken when the sensor froze
            frozen_from = np.searchsorted(t, begins, side="left")
            source = frozen_from[which[inside]]
            for series in values.values():
                series[inside] = series[np.minimum(source, t.size - 1)]
    elif fault == "dropout":
        begins, ends = _stretches(
            seed,
            spec,
            "dropout",
            float(t[0]) if t.size else 0.0,
            float(t[-1]) + 1 if t.size else 0.0,
            _DROPOUT_CHANCE,
            _DROPOUT_HOURS,
        )
        inside, _which = _inside(samples.sent, begins, ends)
        lost = _draws(_key(seed, spec.id, "lost"), samples.index, "uniform")
        keep &= ~inside & (lost >= _LOST_MESSAGE_CHANCE)
    elif fault == "clock_skew":
        stamped += _knob(spec, "clock_skew_s", _DEFAULT_SKEW_S)
    return keep, stamped


# ------------------------------------------------------------------------ readings

_MODELS: Final[Mapping[str, Callable[[DeviceSpec, int, _Samples], dict[str, FloatArray]]]] = {
    "air_quality": _air_quality,
    "energy": _energy,
    "traffic": _traffic,
}


def check_simulatable(spec: DeviceSpec) -> None:
    """Raise `SimulationError` when the model cannot produce one of the device's metrics."""
    unknown = [metric for metric in spec.metrics if metric not in SUPPORTED_METRICS[spec.kind]]
    if unknown:
        raise SimulationError(
            f"device {spec.id!r}: a simulated {spec.kind} device cannot measure "
            f"{', '.join(unknown)} (it can: {', '.join(sorted(SUPPORTED_METRICS[spec.kind]))})"
        )


def readings(spec: DeviceSpec, start: float, end: float, seed: int) -> dict[str, np.ndarray]:
    """What the simulated device measures and sends for measurement times in [start, end).

    Returns one array per metric of ``spec`` (values in the metric's canonical unit, rounded
    to what the device reports; NaN where the device leaves the field out), plus
    ``"time"``, the timestamp the device writes into the payload (wrong on a device with
    clock skew), and ``"sent"``, when the message is published. For a traffic counter the
    time is the start of the counted period, and it is sent when the period ends.
    Messages lost to a dropout fault are simply absent.
    """
    check_simulatable(spec)
    lookback = _FAULT_LOOKBACK_S if spec.fault == "flat_line" else 0.0
    samples = _samples(spec, start - lookback, end)
    values = _MODELS[spec.kind](spec, seed, samples)
    chosen = {metric: values[metric] for metric in spec.metrics}
    for metric, series in chosen.items():
        chosen[metric] = np.round(series, _DECIMALS[metric])
    keep, stamped = _apply_faults(spec, seed, samples, chosen)
    keep &= samples.time >= start
    result: dict[str, np.ndarray] = {"time": stamped[keep], "sent": samples.sent[keep]}
    for metric, series in chosen.items():
        result[metric] = np.round(series[keep], _DECIMALS[metric])
    return result


# ------------------------------------------------------------------------ payloads


def _number(value: float) -> float | int:
    """A JSON/CBOR number as a device writes it: whole numbers without a fraction."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _iso(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    text = moment.isoformat(timespec="milliseconds" if timestamp % 1 else "seconds")
    return text.replace("+00:00", "Z")


def encode_payload(spec: DeviceSpec, timestamp: float, values: Mapping[str, float]) -> bytes:
    """One telemetry message of ``spec`` in its payload form.

    SenML (RFC 8428) carries the base name and base time in the first record only; values
    are in the device's units (`_DEVICE_UNITS`), and an energy register is a Sum with
    ``u: "W"``, so its number is in joules (§4.2). SenML CBOR uses the integer labels of
    §6 Table 4. The plain JSON object has no units: its values are in canonical units.
    NaN values (a field the device leaves out) are skipped.
    """
    present = [(metric, value) for metric, value in values.items() if not math.isnan(value)]
    if spec.payload == "json":
        document: dict[str, Any] = {"time": _iso(timestamp)}
        for metric, value in present:
            document[metric] = _number(value)
        return orjson.dumps(document)
    cbor = spec.payload == "senml-cbor"
    bn, bt, n, u, v, s = (-2, -3, 0, 1, 2, 5) if cbor else ("bn", "bt", "n", "u", "v", "s")
    pack: list[dict[Any, Any]] = []
    for position, (metric, value) in enumerate(present):
        record: dict[Any, Any] = {bn: f"{spec.id}:", bt: _number(timestamp)} if not position else {}
        record[n] = metric
        record[u] = _DEVICE_UNITS[metric]
        if metric == "energy":
            # kWh with Wh resolution -> whole joules
            record[s] = round(value * 1000.0) * _JOULES_PER_WH
        else:
            record[v] = _number(value)
        pack.append(record)
    return cbor2.dumps(pack) if cbor else orjson.dumps(pack)


def telemetry_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/{device_id}/telemetry"


def status_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/{device_id}/status"


def _lead_s(spec: DeviceSpec) -> float:
    """How long after its measurement time a message is sent."""
    return float(spec.interval_s) if spec.kind == "traffic" else 0.0


def simulated_messages(
    specs: Sequence[DeviceSpec],
    start: float,
    end: float,
    seed: int,
    prefix: str = "smartby",
    *,
    chunk_s: float = _DAY,
) -> Iterator[tuple[float, str, bytes]]:
    """``(sent, topic, payload)`` of every message the devices send in [start, end), in the
    order they are sent (ties in catalogue order).

    Generated ``chunk_s`` of time at a time, so a month of history never sits in memory.
    """
    for spec in specs:
        check_simulatable(spec)
    topics = [telemetry_topic(prefix, spec.id) for spec in specs]
    chunk_start = float(start)
    while chunk_start < end:
        chunk_end = min(chunk_start + chunk_s, float(end))
        streams: list[Iterator[tuple[float, int, int, bytes]]] = []
        for number, spec in enumerate(specs):
            streams.append(_device_messages(spec, number, seed, chunk_start, chunk_end))
        for sent, number, _row, payload in heapq.merge(*streams):
            yield sent, topics[number], payload
        chunk_start = chunk_end


def _device_messages(
    spec: DeviceSpec, number: int, seed: int, start: float, end: float
) -> Iterator[tuple[float, int, int, bytes]]:
    """One device's messages sent in [start, end), sorted by send time."""
    series = readings(spec, start - _lead_s(spec), end, seed)
    sent = series["sent"]
    wanted = (sent >= start) & (sent < end)
    times = series["time"][wanted].tolist()
    sent_times = sent[wanted].tolist()
    columns = [(metric, series[metric][wanted].tolist()) for metric in spec.metrics]
    for row, (sent_at, stamp) in enumerate(zip(sent_times, times, strict=True)):
        values = {metric: column[row] for metric, column in columns}
        yield sent_at, number, row, encode_payload(spec, stamp, values)


def count_messages(specs: Sequence[DeviceSpec], start: float, end: float, seed: int) -> int:
    """How many messages `simulated_messages` yields for the same arguments."""
    total = 0
    for spec in specs:
        samples = _samples(spec, start - _lead_s(spec), end)
        keep = (samples.sent >= start) & (samples.sent < end)
        if spec.fault == "dropout" and samples.index.size:
            values: dict[str, FloatArray] = {}
            kept, _stamped = _apply_faults(spec, seed, samples, values)
            keep &= kept
        total += int(keep.sum())
    return total


# ----------------------------------------------------------------------- simulator


@dataclass
class PublishReport:
    """What a backfill or live run published."""

    messages: int = 0
    per_device: dict[str, int] = field(default_factory=dict)
    start: float = 0.0  # the simulated time span covered
    end: float = 0.0
    elapsed_s: float = 0.0
    stopped: bool = False  # ended early by `Simulator.stop`


@dataclass
class _Tally:
    """Counters over all devices' connections. Everything runs on the simulator's one
    thread (paho driven by our own ``select`` loop), so they need no locks."""

    sent: int = 0  # telemetry messages published
    statuses: int = 0  # status messages published (each also gets a PUBACK)
    acked: int = 0  # PUBACKs received, telemetry and status alike

    @property
    def outstanding(self) -> int:
        return self.sent + self.statuses - self.acked

    @property
    def telemetry_acked(self) -> int:
        return self.acked - self.statuses


class _Link:
    """One device's MQTT connection."""

    def __init__(self, spec: DeviceSpec, client: mqtt.Client, status: str, tally: _Tally) -> None:
        self.spec = spec
        self.client = client
        self.status_topic = status
        self.tally = tally
        self.connected = False
        self.refused: str | None = None
        self.retry_at = 0.0  # when to try to reconnect after losing the connection
        self.backoff = 1.0

    def on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            return
        self.connected = True
        self.backoff = 1.0
        # Retained, so whoever subscribes later still learns the device is up.
        self.tally.statuses += 1
        client.publish(self.status_topic, b"online", qos=1, retain=True)

    def on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        was_connected, self.connected = self.connected, False
        if was_connected and reason.is_failure:
            log.warning("device %s lost its broker connection: %s", self.spec.id, reason)

    def on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        _reason: ReasonCode,
        _properties: object,
    ) -> None:
        self.tally.acked += 1


class Simulator:
    """Simulated devices publishing through a real broker, one MQTT connection per device.

    ``credentials`` maps a device id to its secret (the MQTT user name is the device id,
    so the broker's ACL holds each device to its own topics); leave it empty for an
    anonymous broker. Each device's connection has a retained ``online`` status and a
    retained ``offline`` last will on ``<prefix>/<id>/status``.

    Use as a context manager, or call `connect` and `close`. All methods belong to one
    thread, which drives every connection with one ``select`` loop (no paho threads: half
    the cost per message, and no thread per device), except `stop`, which may be called
    from a signal handler: it only sets a flag, which a running `backfill` or `run`
    notices within a fifth of a second.
    """

    def __init__(
        self,
        devices: Sequence[DeviceSpec],
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = "smartby",
        credentials: Mapping[str, str] | None = None,
        seed: int = 0,
        tls: bool = False,
        window: int = 1000,
        connect_timeout: float = 15.0,
    ) -> None:
        if not devices:
            raise SimulationError("no devices to simulate")
        for spec in devices:
            check_simulatable(spec)
        credentials = dict(credentials or {})
        if credentials:
            missing = [spec.id for spec in devices if spec.id not in credentials]
            if missing:
                raise SimulationError(
                    f"no secret for device(s) {', '.join(missing)}: give every device its "
                    "secret, or none for an anonymous broker"
                )
        if window < 1:
            raise SimulationError(f"window must be at least 1, not {window}")
        self.devices = tuple(devices)
        self.host = host
        self.port = port
        self.prefix = prefix
        self.seed = seed
        self.window = window
        self.connect_timeout = connect_timeout
        self._credentials = credentials
        self._tls = tls
        self._links: dict[str, _Link] = {}
        self._tally = _Tally()
        self._topics = {telemetry_topic(prefix, spec.id): spec.id for spec in self.devices}
        self._stop_requested = False
        self._published_until: float | None = None
        self._misc_at = 0.0

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Simulator:
        self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Ask a running backfill or live run to end (safe in a signal handler)."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def connect(self) -> None:
        """Connect every device and wait until the broker has accepted them all."""
        if self._links:
            return
        try:
            for spec in self.devices:
                self._links[spec.id] = self._open(spec)
            deadline = _time.monotonic() + self.connect_timeout
            while not all(link.connected for link in self._links.values()):
                refused = next((link for link in self._links.values() if link.refused), None)
                if refused is not None:
                    raise SimulationError(
                        f"device {refused.spec.id!r}: the broker at {self.host}:{self.port} "
                        f"refused the connection ({refused.refused})"
                    )
                if _time.monotonic() > deadline:
                    waiting = [link.spec.id for link in self._links.values() if not link.connected]
                    raise SimulationError(
                        f"no CONNACK from the broker at {self.host}:{self.port} within "
                        f"{self.connect_timeout:.0f} s for device(s) {', '.join(waiting[:5])}"
                    )
                if self._stop_requested:
                    return
                self._service(0.05, reconnect=False)
        except BaseException:
            self._drop_links()
            raise

    def _open(self, spec: DeviceSpec) -> _Link:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            # Unique, so that a second simulator (or the real device) does not take over
            # this session; the device id first, so the broker's log says whose it is.
            client_id=f"{spec.id}-sim-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        link = _Link(spec, client, status_topic(self.prefix, spec.id), self._tally)
        client.on_connect = link.on_connect
        client.on_disconnect = link.on_disconnect
        client.on_publish = link.on_publish
        # The window is ours, across devices; paho's own cap of 20 per client would only
        # hold messages back inside paho.
        client.max_inflight_messages_set(0)
        client.will_set(link.status_topic, b"offline", qos=1, retain=True)
        if self._credentials:
            client.username_pw_set(spec.id, self._credentials[spec.id])
        if self._tls:
            client.tls_set()
        try:
            client.connect(self.host, self.port, keepalive=60)
        except OSError as exc:
            raise SimulationError(
                f"device {spec.id!r}: cannot reach the broker at {self.host}:{self.port}: {exc}"
            ) from None
        return link

    def close(self) -> None:
        """Say ``offline`` (retained) for every device, wait briefly for the broker to
        take it, and disconnect. A clean disconnect suppresses the last will, so the
        status is published here."""
        for link in self._links.values():
            if link.connected:
                self._tally.statuses += 1
                link.client.publish(link.status_topic, b"offline", qos=1, retain=True)
        self._drain(5.0)
        self._drop_links()

    def _drop_links(self) -> None:
        for link in self._links.values():
            link.client.disconnect()
        self._service(0.0, reconnect=False)
        self._links.clear()

    # -- the network loop --------------------------------------------------------------

    def _service(self, timeout: float, *, reconnect: bool = True) -> None:
        """One turn of the network loop: wait up to ``timeout`` for any connection to be
        readable (PUBACKs, CONNACKs) or writable (what paho could not send at once), then
        let paho handle it; keepalive pings; reconnect lost connections with backoff."""
        sockets: dict[Any, _Link] = {}
        writers = []
        for link in self._links.values():
            sock = link.client.socket()
            if sock is None:
                continue
            sockets[sock] = link
            if link.client.want_write():
                writers.append(sock)
        if sockets:
            try:
                readable, writable, _ = select.select(list(sockets), writers, [], timeout)
            except (OSError, ValueError):  # a socket closed under us: next turn sees it
                readable, writable = [], []
            for sock in readable:
                sockets[sock].client.loop_read()
            for sock in writable:
                link = sockets[sock]
                if link.client.socket() is not None:
                    link.client.loop_write()
        elif timeout > 0:
            _time.sleep(timeout)
        now = _time.monotonic()
        if now >= self._misc_at:
            self._misc_at = now + 1.0
            for link in self._links.values():
                link.client.loop_misc()
                if reconnect and link.client.socket() is None and now >= link.retry_at:
                    self._reconnect(link, now)

    def _reconnect(self, link: _Link, now: float) -> None:
        """Try once to get a lost connection back; QoS 1 messages paho still holds are
        sent again after the new CONNACK."""
        link.retry_at = now + link.backoff
        link.backoff = min(link.backoff * 2, 30.0)
        try:
            link.client.reconnect()
        except OSError as exc:
            log.warning(
                "device %s: broker %s:%s unreachable (%s); retrying in %.0f s",
                link.spec.id,
                self.host,
                self.port,
                exc,
                link.backoff,
            )

    def _publish(self, topic: str, payload: bytes, device_id: str) -> bool:
        """Publish one telemetry message once the window has room; False if stopped first.

        While a device is disconnected, paho keeps its QoS 1 messages and sends them after
        reconnecting, so nothing is lost, and the window bounds how much piles up.
        """
        while self._tally.outstanding >= self.window:
            if self._stop_requested:
                return False
            self._service(0.2)
        self._tally.sent += 1
        self._links[device_id].client.publish(topic, payload, qos=1)
        return True

    def _drain(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged everything published; True if it did."""
        deadline = _time.monotonic() + timeout
        while self._tally.outstanding > 0:
            remaining = deadline - _time.monotonic()
            if remaining <= 0:
                return False
            self._service(min(0.2, remaining))
        return True

    # -- modes -------------------------------------------------------------------------

    def backfill(
        self,
        duration_s: float,
        end: float | None = None,
        progress: ProgressCallback | None = None,
        *,
        drain_timeout: float = 120.0,
    ) -> PublishReport:
        """Publish the history of [end - duration_s, end) as fast as the broker takes it.

        Messages go out in time order across devices, with at most ``window`` awaiting
        their PUBACK: a sliding window, because paho rescans its outgoing queue on every
        PUBACK and its 16-bit packet ids run out past 65535 in flight. Per-device timing
        is kept in the payloads, not in the publishing. ``progress(done, total)`` is
        called on this thread, about ten times a second. ``end`` defaults to now; a later
        `run` continues from it.
        """
        self.connect()
        end = float(_time.time() if end is None else end)
        start = end - float(duration_s)
        total = count_messages(self.devices, start, end, self.seed)
        report = PublishReport(start=start, end=end)
        began = _time.monotonic()
        acked_before = self._tally.telemetry_acked
        next_progress = 0.0

        def done() -> int:
            return max(0, min(report.messages, self._tally.telemetry_acked - acked_before))

        if progress is not None:
            progress(0, total)
        for number, (_sent, topic, payload) in enumerate(
            simulated_messages(self.devices, start, end, self.seed, self.prefix)
        ):
            device_id = self._topics[topic]
            if not self._publish(topic, payload, device_id):
                report.stopped = True
                break
            report.messages += 1
            report.per_device[device_id] = report.per_device.get(device_id, 0) + 1
            if number % 200 == 0:
                # PUBACKs are read here too, not only when the window is full, so that
                # the broker's answers never pile up in the socket.
                self._service(0.0)
                now = _time.monotonic()
                if progress is not None and now >= next_progress:
                    next_progress = now + 0.1
                    progress(done(), total)
            if self._stop_requested:
                report.stopped = True
                break
        if not self._drain(drain_timeout):
            raise SimulationError(
                f"the broker at {self.host}:{self.port} did not acknowledge "
                f"{self._tally.outstanding} message(s) within {drain_timeout:.0f} s"
            )
        if progress is not None:
            progress(done(), report.messages if report.stopped else total)
        report.elapsed_s = _time.monotonic() - began
        if not report.stopped:
            self._published_until = end
        return report

    def run(
        self,
        speed: float = 1.0,
        start: float | None = None,
        until: float | None = None,
        *,
        allow_future: bool = False,
        chunk_s: float = 600.0,
    ) -> PublishReport:
        """Publish in (simulated) real time until `stop` is called or ``until`` is reached.

        Without ``start`` the simulated clock is the wall clock, and the run continues
        where a backfill on this simulator ended: what fell due in between goes out at
        once, so the history has no gap. With ``start`` (in the past) the simulated clock
        starts there and runs ``speed`` times as fast as the wall clock, until it catches
        up with it. It never runs ahead of the wall clock unless ``allow_future`` is set,
        because ingest quarantines readings from the future.
        """
        if speed <= 0:
            raise SimulationError(f"speed must be positive, not {speed}")
        self.connect()
        wall_start = _time.monotonic()
        if start is None:
            clock_start = self._published_until or _time.time()
            origin = _time.time()
        else:
            clock_start = origin = float(start)
        report = PublishReport(start=clock_start, end=clock_start)

        def clock() -> float:
            scaled = origin + (_time.monotonic() - wall_start) * speed
            return scaled if allow_future else min(scaled, _time.time())

        cursor = clock_start
        while not self._stop_requested and (until is None or cursor < until):
            horizon = cursor + chunk_s if until is None else min(cursor + chunk_s, until)
            for sent, topic, payload in simulated_messages(
                self.devices, cursor, horizon, self.seed, self.prefix, chunk_s=chunk_s
            ):
                if not self._wait_for_clock(clock, sent, speed):
                    break
                device_id = self._topics[topic]
                if not self._publish(topic, payload, device_id):
                    break
                report.messages += 1
                report.per_device[device_id] = report.per_device.get(device_id, 0) + 1
                report.end = sent
            if self._stop_requested:
                break
            if not self._wait_for_clock(clock, horizon, speed):
                break
            cursor = horizon
            report.end = cursor
            self._published_until = cursor
        report.stopped = self._stop_requested
        self._drain(10.0)
        report.elapsed_s = _time.monotonic() - wall_start
        return report

    def _wait_for_clock(self, clock: Callable[[], float], when: float, speed: float) -> bool:
        """Serve the network until the simulated clock reaches ``when``; False if stopped.

        Waits in turns of at most 0.2 s, so that `stop` (a plain flag) is seen promptly.
        """
        while True:
            if self._stop_requested:
                return False
            ahead = when - clock()
            if ahead <= 0:
                return True
            self._service(min(0.2, max(ahead / speed, 0.001)))
