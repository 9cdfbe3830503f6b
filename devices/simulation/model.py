"""The signal model: what a simulated device measures and sends over a window, from the
model of its kind (air quality, energy, traffic) and its faults."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import numpy as np

from core.errors import SmartbyError
from devices.catalogue import DeviceSpec
from devices.simulation.air_quality import air_quality
from devices.simulation.draws import FloatArray
from devices.simulation.energy import energy
from devices.simulation.faults import FAULT_LOOKBACK_S, apply_faults
from devices.simulation.sampling import Samples, device_samples
from devices.simulation.traffic import traffic

#: What each kind of simulated device can measure.
SUPPORTED_METRICS: Final[Mapping[str, frozenset[str]]] = {
    "air_quality": frozenset(
        {"pm25", "pm10", "no2", "o3", "so2", "temperature", "humidity", "pressure"}
    ),
    "energy": frozenset({"energy", "power"}),
    "traffic": frozenset({"vehicle_count", "heavy_vehicle_count", "speed"}),
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


class SimulationError(SmartbyError):
    """The simulator cannot do what was asked; the message says which device and why."""


_MODELS: Final[Mapping[str, Callable[[DeviceSpec, int, Samples], dict[str, FloatArray]]]] = {
    "air_quality": air_quality,
    "energy": energy,
    "traffic": traffic,
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
    lookback = FAULT_LOOKBACK_S if spec.fault == "flat_line" else 0.0
    samples = device_samples(spec, start - lookback, end)
    values = _MODELS[spec.kind](spec, seed, samples)
    chosen = {metric: values[metric] for metric in spec.metrics}
    for metric, series in chosen.items():
        chosen[metric] = np.round(series, _DECIMALS[metric])
    keep, stamped = apply_faults(spec, seed, samples, chosen)
    keep &= samples.time >= start
    result: dict[str, np.ndarray] = {"time": stamped[keep], "sent": samples.sent[keep]}
    for metric, series in chosen.items():
        result[metric] = np.round(series[keep], _DECIMALS[metric])
    return result
