"""Air-quality stations: NO2 and PM2.5 that follow the rush hours, PM10 road dust on dry
late-winter days (studded tyres), wood smoke on cold evenings, ozone with a spring
maximum, ships' SO2 at the harbour, and the station's own thermometer, hygrometer and
barometer."""

from __future__ import annotations

import numpy as np

from devices.catalogue import DeviceSpec
from devices.simulation.calendar import HOUR, NARVIK_LON, YEAR_DAYS, local_calendar, winterness
from devices.simulation.draws import FloatArray, ar1, bump, logistic, stream_key
from devices.simulation.sampling import Samples, knob
from devices.simulation.traffic import traffic_intensity
from devices.simulation.weather import weather


def air_quality(spec: DeviceSpec, seed: int, samples: Samples) -> dict[str, FloatArray]:
    t = samples.time
    first, count = samples.span
    cal = local_calendar(t)
    wx = weather(seed, t)
    roadside = spec.site.kind == "roadside"
    aadt = knob(spec, "traffic_aadt", 8000.0 if roadside else 4000.0)
    exposure = knob(spec, "traffic_exposure", 1.0 if roadside else 0.25)
    wood = knob(spec, "wood_burning", 0.5 if roadside else 0.7)
    harbour = bool(spec.simulation.get("harbour", False))
    offset = knob(spec, "temperature_offset", 0.3 if roadside else 0.1)
    steps = 60.0 / spec.interval_s  # samples per minute

    def noise(name: str, tau_minutes: float) -> FloatArray:
        return ar1(stream_key(seed, spec.id, name), first, count, tau_minutes * steps)

    winter = winterness(cal.year_phase)
    traffic = traffic_intensity(cal, "town_street") * (aadt / 9000.0) * exposure
    # Dilution: weaker wind and an inversion keep emissions near the ground.
    dispersion = (1.0 + 2.5 * wx["inversion"]) * (3.0 / (wx["wind"] + 1.0)) ** 0.6

    local_no2 = 20.0 * traffic * dispersion
    no2 = (4.0 + 3.0 * winter + local_no2) * np.exp(0.15 * noise("no2", 20) - 0.011)
    no2 += 0.8 * noise("no2-white", 0)

    # Road dust: studded tyres grind the asphalt all winter; the dust lifts when the roads
    # dry up in late winter (February-April), in the traffic and the wind.
    dust_season = bump(cal.year_phase, 85.0, 24.0) + 0.12 * winter
    road_dry = (1.0 - wx["wet_24h"]) ** 2 * logistic((wx["temperature"] + 4.0) / 1.5)
    suspension = 0.7 + 0.08 * wx["wind"]
    dust = 85.0 * traffic * dust_season * road_dry * suspension * np.sqrt(dispersion)
    # Wood stoves on cold evenings, and more at weekends.
    heating_need = logistic((5.0 - wx["temperature"]) / 3.0)
    evening = bump(cal.hour, 19.5, 2.2) + 0.4 * bump(cal.hour, 7.5, 1.2)
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
        + 20.0 * np.cos(2 * np.pi * (cal.year_phase - 110) / YEAR_DAYS)
        + 12.0 * wx["sun"] * (1.0 - winter)
        - 0.6 * local_no2
        - 20.0 * wx["inversion"]
        + 5.0 * noise("o3", 180)
    )
    so2 = 0.6 + 0.2 * np.abs(noise("so2", 60))
    if harbour:
        so2 = so2 + 12.0 * wx["ship"] * np.sqrt(dispersion) * np.exp(0.3 * noise("ship", 40))

    temperature = wx["temperature"] + offset + 0.25 * noise("temperature", 40)
    diurnal = np.cos(2 * np.pi * (np.mod(t / HOUR + NARVIK_LON / 15.0, 24.0) - 14.5) / 24.0)
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
