"""When a device measures and sends: its sampling instants over a window, and the
per-device simulation knobs of the catalogue."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from devices.catalogue import DeviceSpec
from devices.simulation.draws import FloatArray, IntArray, stream_key


@dataclass(frozen=True, slots=True)
class Samples:
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
    return stream_key(0, "phase", spec.id) % spec.interval_s


def device_samples(spec: DeviceSpec, start: float, end: float) -> Samples:
    interval = spec.interval_s
    phase = _phase(spec)
    first = math.ceil((start - phase) / interval)
    last = math.ceil((end - phase) / interval)  # exclusive
    index = np.arange(first, max(first, last), dtype=np.int64)
    times = index.astype(np.float64) * interval + phase
    # A counter reports its period when the period is over.
    sent = times + interval if spec.kind == "traffic" else times
    return Samples(index, times, sent)


def knob(spec: DeviceSpec, name: str, default: float) -> float:
    value = spec.simulation.get(name, default)
    return float(value) if isinstance(value, int | float) else default
