"""Energy meters in municipal buildings: load profiles by building type, weekday,
holidays and heating season, and the cumulative kWh register (with its resets)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np

from devices.catalogue import DeviceSpec
from devices.simulation.calendar import (
    CHUNK_HOURS,
    DAY,
    EPOCH_ORDINAL,
    HOUR,
    Calendar,
    local_calendar,
)
from devices.simulation.draws import FloatArray, ar1, bump, draws, stream_key, window
from devices.simulation.sampling import Samples, knob
from devices.simulation.weather import weather, weather_chunk


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
        floor_area_m2=knob(spec, "floor_area_m2", 2000.0),
        electric_heating=knob(spec, "electric_heating", 1.0),
        installed=float((installed.toordinal() - EPOCH_ORDINAL) * DAY),
        start_kwh=knob(spec, "register_start_kwh", 0.0),
        faulty=spec.fault == "meter_reset",
    )


def _occupancy(building_type: str, cal: Calendar) -> FloatArray:
    """0..1: how much the building is in use at each instant (local opening hours)."""
    hour, weekday = cal.hour, cal.weekday
    working = cal.working_day
    if building_type == "school":
        term = working & ~cal.school_holiday
        lessons = window(hour, 7.5, 16.0) + 0.2 * window(hour, 17.5, 21.0)
        staff_only = 0.08 * window(hour, 8.0, 15.0)
        result = np.where(term, lessons, np.where(working, staff_only, 0.0))
    elif building_type == "kindergarten":
        result = np.where(working & ~cal.summer_closed, window(hour, 7.0, 16.75), 0.0)
    elif building_type == "office":
        result = np.where(working, window(hour, 7.5, 16.0) + 0.1 * window(hour, 16.0, 19.0), 0.0)
    elif building_type == "library":
        result = np.where(weekday < 4, window(hour, 10.0, 19.0), 0.0)
        result = np.where(weekday == 4, window(hour, 10.0, 16.0), result)
        result = np.where(weekday == 5, window(hour, 11.0, 15.0), result)
        result = np.where(cal.public_holiday, 0.0, result)
    elif building_type == "care_home":
        result = 0.55 + 0.45 * window(hour, 7.0, 20.0) + 0.2 * bump(hour, 11.5, 1.0)
    elif building_type == "swimming_hall":
        result = np.where(weekday < 5, window(hour, 6.75, 21.0), window(hour, 10.0, 17.0))
        result = np.where(cal.public_holiday | cal.summer_closed, 0.0, result)
    elif building_type == "fire_station":
        result = 0.6 + 0.4 * np.where(working, window(hour, 7.5, 15.5), 0.0)
    elif building_type == "culture_house":
        events = np.isin(weekday, (3, 4, 5))
        result = np.where(weekday < 5, 0.35 * window(hour, 9.0, 16.0), 0.0)
        result = result + np.where(events, 0.9 * window(hour, 18.0, 22.5), 0.0)
        result = np.where(weekday == 6, 0.6 * window(hour, 12.0, 17.0), result)
    else:  # sports_hall
        weekday_use = 0.7 * window(hour, 8.0, 15.0) + window(hour, 16.0, 22.5)
        result = np.where(working, weekday_use, 0.7 * window(hour, 9.0, 18.0))
        result = np.where(cal.public_holiday, 0.0, result)
    out: FloatArray = np.clip(result, 0.0, 1.0)
    return out


def _building_power(building: _Building, cal: Calendar, temperature_12h: FloatArray) -> FloatArray:
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
    hours = np.arange(chunk * CHUNK_HOURS, (chunk + 1) * CHUNK_HOURS, dtype=np.int64)
    mid = (hours.astype(np.float64) + 0.5) * HOUR
    wx = weather_chunk(seed, chunk)
    power = _building_power(building, local_calendar(mid), np.asarray(wx["temperature_12h"]))
    kwh = power / 1000.0
    kwh[hours * HOUR < building.installed] = 0.0
    kwh.flags.writeable = False
    return kwh


@lru_cache(maxsize=4096)
def _kwh_before(seed: int, building: _Building, chunk: int) -> float:
    """Energy used from installation to the start of ``chunk`` (call in ascending chunk
    order, as `_integral_kwh` does, so each step finds the previous one cached)."""
    if chunk <= math.floor(building.installed / HOUR) // CHUNK_HOURS:
        return 0.0
    return _kwh_before(seed, building, chunk - 1) + float(
        _hourly_kwh(seed, building, chunk - 1).sum()
    )


def _integral_kwh(seed: int, building: _Building, t: FloatArray) -> FloatArray:
    """Energy used from installation to each instant: the register without resets."""
    out = np.zeros(t.shape)
    hours = np.floor(t / HOUR).astype(np.int64)
    chunks = hours // CHUNK_HOURS
    first = math.floor(building.installed / HOUR) // CHUNK_HOURS
    for chunk in np.unique(chunks).tolist():
        for earlier in range(first, chunk):
            _kwh_before(seed, building, earlier)  # warm the cache bottom-up: no deep recursion
        kwh = _hourly_kwh(seed, building, chunk)
        before = np.concatenate(([0.0], np.cumsum(kwh)[:-1]))
        where = chunks == chunk
        position = hours[where] - chunk * CHUNK_HOURS
        fraction = t[where] / HOUR - hours[where]
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
    first_day = math.floor(building.installed / DAY)
    last_day = math.floor(float(t.max()) / DAY)
    days = np.arange(first_day, last_day + 1, dtype=np.int64)
    chance = draws(stream_key(seed, building.device_id, "reset"), days, "uniform")
    when = draws(stream_key(seed, building.device_id, "reset-time"), days, "uniform")
    if building.faulty:
        chosen = days % _FAULTY_RESET_EVERY_DAYS == (
            stream_key(seed, building.device_id) % _FAULTY_RESET_EVERY_DAYS
        )
    else:
        chosen = chance < _RARE_RESET_PER_DAY
    resets = (days[chosen] * DAY).astype(np.float64) + when[chosen] * DAY
    register = building.start_kwh + integral
    if resets.size:
        at_reset = _integral_kwh(seed, building, resets)
        last = np.searchsorted(resets, t, side="right") - 1
        after = last >= 0
        register = np.where(after, integral - at_reset[np.maximum(last, 0)], register)
    result: FloatArray = np.maximum(register, 0.0)
    return result


def energy(spec: DeviceSpec, seed: int, samples: Samples) -> dict[str, FloatArray]:
    t = samples.time
    first, count = samples.span
    building = _building(spec)
    cal = local_calendar(t)
    wx = weather(seed, t)
    steps = 60.0 / spec.interval_s
    power = _building_power(building, cal, wx["temperature_12h"])
    wobble = ar1(stream_key(seed, spec.id, "power"), first, count, 30 * steps)
    jitter = draws(stream_key(seed, spec.id, "power-white"), samples.index, "normal")
    power = power * (1.0 + 0.03 * wobble + 0.01 * jitter)
    return {
        "power": np.maximum(power, 0.0),
        "energy": _register_kwh(seed, building, t),
    }
