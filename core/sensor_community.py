"""sensor.community's "send to own API" document, as SenML records of our metrics.

The airRohr firmware (opendata-stuttgart/sensors-software, ``airrohr-firmware.ino``:
``sendDataToOptionalApis`` and ``sendData``) POSTs, when "Send data to own API" is on,
``Content-Type: application/json`` with the headers ``X-Sensor: esp8266-<chip id>``
(``esp32-`` on an ESP32) and ``X-MAC-ID``, HTTP Basic credentials when a user or
password is set, and no ``X-PIN`` (that header goes only to sensor.community itself,
one request per sensor).  The body::

    {"esp8266id": "12345678", "software_version": "NRZ-2024-134-B5",
     "sensordatavalues": [{"value_type": "SDS_P1", "value": "12.30"}, ...]}

Values are strings.  ``value_type`` is ``<SENSOR>_<quantity>``: ``P1`` is PM10 and
``P2`` PM2.5 for every particle sensor (SDS, PMS, HPM, NPM, SPS30, IPS, and a bare
``P1``/``P2``), as on sensor.community; temperatures are °C, humidity %, pressures
pascals (``BME280_pressure`` 100230.00 is 1002.3 hPa: the unit says ``Pa`` and ingest
converts it to the catalogue's hPa).  ``signal`` is the Wi-Fi RSSI in dBm: device health,
not environmental data.  ``samples``, ``min_micro``, ``max_micro`` and ``interval`` are the
firmware's loop statistics and GPS fields are its position: left out on purpose.  Any
other value type stays a record under its own name, so ingest quarantines it as an
unknown metric (nothing vanishes silently) until a metric or alias exists for it.

The document has no time: the readings get the time the request arrived.

The field names here are the same as in the profiles' field aliases (``sds_p1`` →
``pm10``, ``bme280_pressure`` in Pa), so this becomes the ``sensor-community`` profile's
decoder once profiles exist on main.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

#: quantity suffix (after the last ``_``, or the whole value type) → (metric, SenML unit)
QUANTITIES: dict[str, tuple[str, str]] = {
    "p1": ("pm10", "ug/m3"),
    "p2": ("pm25", "ug/m3"),
    "temperature": ("temperature", "Cel"),
    "humidity": ("humidity", "%RH"),
    "pressure": ("pressure", "Pa"),
}
#: the firmware's own statistics, and its position: not readings, left out on purpose
DIAGNOSTICS = frozenset({"samples", "min_micro", "max_micro", "interval"})
#: Wi-Fi signal strength in dBm: device health (``devices.rssi``)
SIGNAL = "signal"


class SensorCommunityError(ValueError):
    """The document as a whole is not sensor.community's format."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SensorCommunityPack:
    """The document as a SenML pack of our metrics, and its health."""

    #: SenML JSON records (RFC 8428 §5), time-less: stamped on arrival
    records: list[dict[str, Any]]
    #: for each record, the index of its entry in ``sensordatavalues``
    entries: list[int]
    #: the ``signal`` value (dBm), if the device sent one
    rssi: float | None
    #: the ``esp8266id`` member (the chip id, as in ``X-Sensor: esp8266-<id>``)
    chip_id: str | None

    def senml(self) -> bytes:
        return orjson.dumps(self.records)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def metric_of(value_type: str) -> tuple[str, str] | None:
    """(metric, SenML unit) of a value type: ``SDS_P1`` → (pm10, ug/m3)."""
    quantity = value_type.rsplit("_", 1)[-1].lower()
    return QUANTITIES.get(quantity)


def convert(payload: bytes) -> SensorCommunityPack:
    """The firmware's document as SenML records; `SensorCommunityError` when it is not one."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise SensorCommunityError("bad_json", f"the body is not JSON ({exc.msg})") from None
    if not isinstance(document, dict):
        raise SensorCommunityError("bad_document", "the body is not a JSON object")
    values = document.get("sensordatavalues")
    if not isinstance(values, list):
        raise SensorCommunityError(
            "bad_document", "the object has no sensordatavalues array (sensor.community format)"
        )
    chip = document.get("esp8266id")
    records: list[dict[str, Any]] = []
    entries: list[int] = []
    rssi: float | None = None
    for index, entry in enumerate(values):
        if not isinstance(entry, dict) or not isinstance(entry.get("value_type"), str):
            # a SenML record that is not a map is rejected as bad_record, at its place
            records.append({"vs": "not an object with a value_type", "n": f"entry{index}"})
            entries.append(index)
            continue
        value_type: str = entry["value_type"]
        raw = entry.get("value")
        if value_type == SIGNAL:
            rssi = _number(raw)
            continue
        if value_type in DIAGNOSTICS or value_type.startswith("GPS_"):
            continue
        number = _number(raw)
        target = metric_of(value_type)
        name, unit = target if target is not None else (value_type, None)
        record: dict[str, Any] = {"n": name}
        if unit is not None:
            record["u"] = unit
        if number is None:
            # a string SenML value: ingest rejects it as non_numeric, naming the record
            record["vs"] = str(raw)[:80]
        else:
            record["v"] = number
        records.append(record)
        entries.append(index)
    if not records and rssi is None:
        raise SensorCommunityError("empty", "sensordatavalues holds no measurement")
    return SensorCommunityPack(records, entries, rssi, str(chip) if chip is not None else None)
