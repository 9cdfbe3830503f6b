"""What the devices send: each message in its device's payload form (SenML JSON, SenML
CBOR or the plain JSON object; see core/decode.py), on its topic, and the stream of
all devices' messages in the order they are sent."""

from __future__ import annotations

import datetime as dt
import heapq
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import cbor2
import orjson

from devices.catalogue import DeviceSpec
from devices.simulation.calendar import DAY
from devices.simulation.draws import FloatArray
from devices.simulation.faults import apply_faults
from devices.simulation.model import check_simulatable, readings
from devices.simulation.sampling import device_samples

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

_JOULES_PER_WH: Final = 3600


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
    chunk_s: float = DAY,
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
        samples = device_samples(spec, start - _lead_s(spec), end)
        keep = (samples.sent >= start) & (samples.sent < end)
        if spec.fault == "dropout" and samples.index.size:
            values: dict[str, FloatArray] = {}
            kept, _stamped = apply_faults(spec, seed, samples, values)
            keep &= kept
        total += int(keep.sum())
    return total
