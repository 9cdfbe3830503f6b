"""The faults a few devices have, so that quality control has something to find:
spikes, a flat line, dropouts and a skewed clock (a meter reset is the energy
register's own, in `devices.simulation.energy`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

import numpy as np

from devices.catalogue import DeviceSpec
from devices.simulation.calendar import DAY, HOUR
from devices.simulation.draws import BoolArray, FloatArray, IntArray, draws, stream_key
from devices.simulation.sampling import Samples, knob

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
FAULT_LOOKBACK_S: Final = 12 * HOUR


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
    days = np.arange(math.floor(start / DAY) - 1, math.floor(end / DAY) + 1, dtype=np.int64)
    happens = draws(stream_key(seed, spec.id, name), days, "uniform") < chance
    begin_in_day = draws(stream_key(seed, spec.id, name, "begin"), days, "uniform") * DAY
    length = hours[0] + (hours[1] - hours[0]) * draws(
        stream_key(seed, spec.id, name, "length"), days, "uniform"
    )
    begins = days[happens] * float(DAY) + begin_in_day[happens]
    ends = begins + length[happens] * HOUR
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


def apply_faults(
    spec: DeviceSpec, seed: int, samples: Samples, values: dict[str, FloatArray]
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
            hit = draws(stream_key(seed, spec.id, "spike", metric), samples.index, "uniform")
            spiking = hit < _SPIKE_CHANCE
            if metric == "temperature":
                # 85 °C is what a common digital thermometer reads after a brown-out
                series[spiking] = 85.0
            elif metric in _SPIKE_FLOOR:
                size = 8.0 + 20.0 * draws(
                    stream_key(seed, spec.id, "spike-size", metric), samples.index, "uniform"
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
        lost = draws(stream_key(seed, spec.id, "lost"), samples.index, "uniform")
        keep &= ~inside & (lost >= _LOST_MESSAGE_CHANCE)
    elif fault == "clock_skew":
        stamped += knob(spec, "clock_skew_s", _DEFAULT_SKEW_S)
    return keep, stamped
