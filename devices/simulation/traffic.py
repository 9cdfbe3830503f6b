"""Traffic counters: hourly curves per road class (commuter peaks, free days, summer
tourism), heavy vehicles, and mean speed that drops with load, winter and slippery
roads.  The intensity curves also drive traffic emissions at the air-quality stations."""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import numpy as np

from devices.catalogue import DeviceSpec
from devices.simulation.calendar import DAY, HOUR, Calendar, local_calendar, winterness
from devices.simulation.draws import FloatArray, bump, draws, logistic, poisson, stream_key, window
from devices.simulation.sampling import Samples, knob
from devices.simulation.weather import weather


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
            + 1.0 * bump(hour, 7.65, 0.7)
            + 0.55 * window(hour, 8.5, 15.0, 0.6)
            + 1.3 * bump(hour, 15.75, 1.15)
            + 0.4 * window(hour, 17.0, 21.5, 0.7)
        )
        through = 0.06 + bump(hour, 13.0, 4.0)  # freight and long-distance trips
        shopping = bump(hour, 12.5, 2.0)
    else:
        commuter = 0.03 + 0.95 * bump(hour, 13.5, 3.2) + 0.2 * window(hour, 9.0, 22.0, 0.7)
        through = 0.06 + bump(hour, 14.0, 4.0)
        shopping = bump(hour, 13.0, 2.5)
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


def traffic_intensity(cal: Calendar, road_class: str) -> FloatArray:
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
    summer = bump(cal.year_phase, 200.0, 30.0)
    season = 1.0 + (0.18 if road_class == "european_road" else -0.05) * (summer - 0.2)
    result: FloatArray = shape * factor * season / _WEEK_MEAN
    return result


def _heavy_intensity(cal: Calendar) -> FloatArray:
    """Heavy vehicles relative to their working-day mean: flatter than cars (trucks run at
    night too), and far fewer at weekends."""
    hour = np.linspace(0, 24, 24 * 60, endpoint=False)
    norm = float((0.35 + bump(hour, 12.0, 4.5)).mean())
    shape = (0.35 + bump(cal.hour, 12.0, 4.5)) / norm
    factor = np.where(cal.weekday == 5, 0.5, 1.0)
    factor = np.where(cal.free_day, 0.3, factor)
    result: FloatArray = shape * factor
    return result


def traffic(spec: DeviceSpec, seed: int, samples: Samples) -> dict[str, FloatArray]:
    interval = spec.interval_s
    middle = samples.time + interval / 2
    cal = local_calendar(middle)
    wx = weather(seed, middle)
    road_class = str(spec.simulation.get("road_class", "county_road"))
    aadt = knob(spec, "aadt", 5000.0)
    limit = knob(spec, "speed_limit_kmh", 60.0)
    heavy_share = knob(spec, "heavy_share", 0.08)
    periods = interval / DAY

    # Heavy snowfall keeps some people at home.
    snowing = wx["wet"] * logistic((0.5 - wx["temperature"]) / 1.0)
    expected = aadt * periods * traffic_intensity(cal, road_class) * (1.0 - 0.1 * snowing)
    expected_heavy = np.minimum(
        aadt * heavy_share * periods * _heavy_intensity(cal), 0.6 * expected
    )
    heavy = poisson(stream_key(seed, spec.id, "heavy"), samples.index, expected_heavy)
    light = poisson(stream_key(seed, spec.id, "light"), samples.index, expected - expected_heavy)
    vehicles = heavy + light

    # Speed: a little over the limit on open roads, under it in town; slower when the road
    # fills up, in winter, and much slower on a wet road near freezing.
    free_flow = {"european_road": 1.03, "county_road": 1.0}.get(road_class, 0.92) * limit
    capacity = {"european_road": 1800.0, "county_road": 1200.0}.get(road_class, 1100.0)
    load = vehicles / (capacity * interval / HOUR)
    winter = winterness(cal.year_phase)
    slippery = wx["wet"] * logistic((1.0 - wx["temperature"]) / 1.0)
    mean_speed = free_flow * (1.0 - 0.35 * load**2) * (1.0 - 0.04 * winter - 0.12 * slippery)
    scatter = draws(stream_key(seed, spec.id, "speed"), samples.index, "normal")
    speed = mean_speed + scatter * (5.0 / np.sqrt(vehicles + 1.0) + 0.5)
    # No vehicles, no mean speed: the counter leaves the field out.
    speed = np.where(vehicles > 0, np.maximum(speed, 5.0), np.nan)
    return {"vehicle_count": vehicles, "heavy_vehicle_count": heavy, "speed": speed}
