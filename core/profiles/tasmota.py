"""The ``tasmota`` profile: devices running Tasmota firmware, as they come.

Tasmota publishes its sensors every ``TelePeriod`` on ``tele/<topic>/SENSOR`` (the
default ``FullTopic %prefix%/%topic%/``, https://tasmota.github.io/docs/MQTT/) as one
JSON object per device, a nested object per sensor::

    {"Time":"2024-01-01T12:00:00","SDS0X1":{"PM2.5":5.1,"PM10":12.3},
     "BME280":{"Temperature":21.3,"Humidity":45.0,"Pressure":1002.3},
     "PressureUnit":"hPa","TempUnit":"C"}

and a power plug's meter as ``"ENERGY":{"Total":14.834,"Power":23,"Voltage":230,…}``.
Its availability is the retained last will ``tele/<topic>/LWT``: ``Online`` / ``Offline``.
The registry key is the device's ``Topic``.

``Time`` is the device's local clock without an offset unless ``SetOption52 1`` appends
one; without it the device's time zone applies (its ``timezone`` option, default
``SMARTBY_TIMEZONE``), and of the twice-occurring hour when the clocks go back the first
is taken.  Temperatures are in ``TempUnit`` (C; F is refused: ``SetOption8 0``) and
pressures in ``PressureUnit`` (hPa; mmHg is refused: ``SetOption24 0``), because SenML
has neither unit.  Numbers written as text are accepted.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from core.profiles.base import (
    DeviceOptions,
    Profile,
    Route,
    StatusReport,
    TopicFilter,
    bad_status,
)
from core.profiles.fields import leaf, readings_of
from core.readings import DecodeError, DecodeResult, RejectedRecord, parse_time, show

#: top-level members that describe the message rather than measure anything
_META = frozenset({"Time", "TempUnit", "PressureUnit", "SpeedUnit", "Epoch"})
_KINDS = {"SENSOR": "telemetry", "LWT": "status"}


class TasmotaProfile(Profile):
    name: ClassVar[str] = "tasmota"
    key_label: ClassVar[str] = "Tasmota topic"
    first_level = "tele"
    numeric_strings: ClassVar[bool] = True
    local_time: ClassVar[bool] = True

    def filters(self) -> tuple[TopicFilter, ...]:
        return (
            TopicFilter("tele/+/SENSOR", telemetry=True),
            TopicFilter("tele/+/LWT", telemetry=False),
        )

    def device_topics(self, key: str) -> tuple[str, ...]:
        return (f"tele/{key}/SENSOR", f"tele/{key}/LWT")

    def route(self, levels: list[str]) -> Route | None:
        if len(levels) != 3 or levels[0] != "tele" or not levels[1]:
            return None
        kind = _KINDS.get(levels[2])
        if kind is None:
            return None
        return Route(self, kind, (levels[1],))  # type: ignore[arg-type]

    def decode(
        self, payload: bytes, now: float, route: Route, options: DeviceOptions
    ) -> DecodeResult:
        document = _object(payload)
        raw_time = document.get("Time")
        when = now if raw_time is None else parse_time(raw_time, options.timezone)
        temperature_unit = _unit(document, "TempUnit", {"C": "Cel"}, "SetOption8 0 (Celsius)")
        pressure_unit = _unit(document, "PressureUnit", {"hPa": "hPa"}, "SetOption24 0 (hPa)")

        def unit_of(path: str) -> str | RejectedRecord | None:
            name = leaf(path)
            if name.startswith(("temperature", "dewpoint")):
                chosen = temperature_unit
            elif name in ("pressure", "seapressure"):
                chosen = pressure_unit
            else:
                return None
            if isinstance(chosen, RejectedRecord):
                return RejectedRecord(chosen.position, path, chosen.reason, chosen.detail)
            return chosen

        strings = (
            self.numeric_strings if options.numeric_strings is None else options.numeric_strings
        )
        readings, rejected = readings_of(
            document, when, numeric_strings=strings, skip=_META, unit_of=unit_of
        )
        if not readings and not rejected:
            raise DecodeError("empty", "the SENSOR message holds no sensor values")
        return DecodeResult("tasmota", readings, rejected, raw_time is None)

    def status(self, payload: bytes, now: float) -> StatusReport:
        text = payload.strip().lower()
        if text in (b"online", b"offline"):
            return StatusReport(online=text == b"online")
        raise bad_status(f"an LWT message is Online or Offline, not {show(payload[:40])}")


def _object(payload: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("undecodable", f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError(
            "bad_structure", f"a SENSOR message is a JSON object, not {show(document)}"
        )
    return document


def _unit(
    document: dict[str, Any], member: str, known: dict[str, str], fix: str
) -> str | RejectedRecord | None:
    """The SenML unit a Tasmota unit member names, None when absent, or the rejection
    every field in it gets."""
    raw = document.get(member)
    if raw is None:
        return None
    unit = known.get(raw) if isinstance(raw, str) else None
    if unit is None:
        return RejectedRecord(
            0, None, "bad_unit", f"{member} {show(raw)} has no SenML unit; set {fix}"
        )
    return unit
