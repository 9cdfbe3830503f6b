"""Town-wide weather: temperature, wind, rain, pressure, long-range pollution, ships at
berth and winter inversions, hourly, shared by every station so that a cold, calm day
raises pollution everywhere at once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Final

import numpy as np

from devices.simulation.calendar import (
    CHUNK_HOURS,
    HOUR,
    NARVIK_LON,
    YEAR_DAYS,
    sin_solar_elevation,
    winterness,
    year_phase,
)
from devices.simulation.draws import FloatArray, ar1, logistic, stream_key

_WEATHER_WARMUP: Final = 24  # hours before a chunk needed by the causal means

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
def weather_chunk(seed: int, chunk: int) -> Mapping[str, FloatArray]:
    """Town-wide hourly weather for one chunk of hours: every station shares it, so a cold,
    calm day raises pollution everywhere at once, as an inversion does."""
    first = chunk * CHUNK_HOURS - _WEATHER_WARMUP
    count = CHUNK_HOURS + _WEATHER_WARMUP
    t = np.arange(first, first + count, dtype=np.float64) * HOUR
    phase = year_phase(t)
    winter = winterness(phase)
    solar_hour = np.mod(t / HOUR + NARVIK_LON / 15.0, 24.0)
    sun = np.maximum(sin_solar_elevation(phase, solar_hour), 0.0)
    noon = np.maximum(sin_solar_elevation(phase, 12.0), 0.0)

    def ar(name: str, tau_hours: float) -> FloatArray:
        return ar1(stream_key(seed, "weather", name), first, count, tau_hours)

    # Narvik's climate: January about -4 °C, July about +13.5 °C; no diurnal cycle in the
    # polar night, a few degrees under the midnight sun; synoptic swings larger in winter.
    climate = 4.6 - 8.9 * np.cos(2 * np.pi * (phase - 22) / YEAR_DAYS)
    diurnal = (0.4 + 3.0 * noon) * np.cos(2 * np.pi * (solar_hour - 14.5) / 24.0)
    anomaly = (2.5 + 2.0 * winter) * ar("temperature", 60)
    wind = 4.0 * (1.0 + 0.2 * winter) * np.exp(0.5 * ar("wind", 18) - 0.125)
    wet = logistic((ar("precipitation", 14) - 0.25) / 0.3)
    # Inversions: winter, calm, colder than normal, clear skies. Cold air pools in the
    # fjord and holds traffic and wood smoke near the ground.
    calm = logistic((1.8 - wind) / 0.4)
    cold = logistic((-anomaly - 1.0) / 1.0)
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
        "ship": logistic((ar("ship", 20) - 0.9) / 0.15),  # ore carriers at berth
        "inversion": inversion,
        "sun": sun,
    }
    result: dict[str, FloatArray] = {}
    for name, values in fields.items():
        kept = np.ascontiguousarray(values[_WEATHER_WARMUP:])
        kept.flags.writeable = False
        result[name] = kept
    return result


def weather(seed: int, t: FloatArray) -> dict[str, FloatArray]:
    """Weather at instants ``t``, interpolated linearly between the hourly values."""
    if t.size == 0:
        return {name: np.empty(0) for name in _WEATHER_FIELDS}
    first_hour = math.floor(float(t.min()) / HOUR)
    last_hour = math.floor(float(t.max()) / HOUR) + 1
    chunks = range(first_hour // CHUNK_HOURS, last_hour // CHUNK_HOURS + 1)
    parts = [weather_chunk(seed, chunk) for chunk in chunks]
    knots = np.arange(chunks[0] * CHUNK_HOURS, (chunks[-1] + 1) * CHUNK_HOURS, dtype=np.float64)
    knots *= HOUR
    return {
        name: np.interp(t, knots, np.concatenate([part[name] for part in parts]))
        for name in _WEATHER_FIELDS
    }
