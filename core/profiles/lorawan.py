"""LoRaWAN network servers' MQTT integrations: ``ttn-v3`` and ``chirpstack-v4``.

A LoRaWAN sensor sends bytes; the network server decodes them with the device's
payload formatter (codec) into a JSON object, and publishes it with the uplink's radio
metadata.  The object's members become readings, named by their path as in
`core.profiles.fields`; the radio metadata (RSSI and SNR of the best gateway, how many
gateways heard it) and a battery level become device health, never environmental
readings.

The Things Stack (https://www.thethingsindustries.com/docs/integrations/data-formats/):
``v3/<application id>@<tenant id>/devices/<device id>/up`` with ``end_device_ids``,
``received_at`` and ``uplink_message`` (``decoded_payload``, ``rx_metadata[]`` with
``rssi``/``snr``/``time``, its own ``received_at``).  The registry key is the device
id, or its DevEUI for devices whose id is TTS's default ``eui-<deveui>``.

ChirpStack v4 (https://www.chirpstack.io/docs/chirpstack/integrations/events.html):
``application/<application id>/device/<DevEUI>/event/up`` with ``time``,
``deviceInfo.devEui``, ``object`` (the codec's output) and ``rxInfo[]``; and
``…/event/status`` with ``batteryLevel`` (%) from the device's DevStatusAns.  The
registry key is the DevEUI (16 hex digits, stored in lower case).

An uplink without a decoded object (no formatter configured) is quarantined as
``no_decoded_payload``; one whose payload names another device than its topic as
``identity_mismatch``; a TTS console simulation (``"simulated": true``) as
``simulated_uplink``: it was typed, not measured.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final

import orjson

from core.profiles.base import (
    DeviceOptions,
    Profile,
    Route,
    StatusReport,
    TopicFilter,
    bad_status,
)
from core.profiles.fields import readings_of
from core.readings import DecodeError, DecodeResult, RadioHealth, number, parse_time, show

_EUI: Final = re.compile(r"[0-9A-Fa-f]{16}")
_TTS_DEFAULT_ID: Final = re.compile(r"eui-([0-9a-f]{16})")


def _document(payload: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("undecodable", f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError("bad_structure", f"an event is a JSON object, not {show(document)}")
    return document


def _member(document: dict[str, Any], *path: str) -> Any:
    node: Any = document
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _best_gateway(receptions: Any, rssi_key: str, snr_key: str, when: float) -> RadioHealth | None:
    """RSSI and SNR of the gateway that heard the uplink loudest, and how many did."""
    if not isinstance(receptions, list) or not receptions:
        return None
    best: tuple[float, float | None] | None = None
    for reception in receptions:
        if not isinstance(reception, dict):
            continue
        rssi = number(reception.get(rssi_key))
        if rssi is None:
            rssi = number(reception.get("channel_rssi"))
        if rssi is not None and (best is None or rssi > best[0]):
            best = (rssi, number(reception.get(snr_key)))
    if best is None:
        return RadioHealth(when, gateways=len(receptions))
    return RadioHealth(when, rssi=best[0], snr=best[1], gateways=len(receptions))


def _eui(text: str, label: str) -> str:
    if _EUI.fullmatch(text) is None:
        raise ValueError(f"{label} {text!r} is not a DevEUI of 16 hexadecimal digits")
    return text.lower()


class TTNProfile(Profile):
    """The Things Stack (The Things Network v3) MQTT integration."""

    name: ClassVar[str] = "ttn-v3"
    key_label: ClassVar[str] = "TTS device id or DevEUI"
    first_level = "v3"
    numeric_strings: ClassVar[bool] = True

    def filters(self) -> tuple[TopicFilter, ...]:
        return (TopicFilter("v3/+/devices/+/up", telemetry=True),)

    def route(self, levels: list[str]) -> Route | None:
        if (
            len(levels) != 5
            or levels[0] != "v3"
            or levels[2] != "devices"
            or levels[4] != "up"
            or not levels[1]
            or not levels[3]
        ):
            return None
        device = levels[3]
        default = _TTS_DEFAULT_ID.fullmatch(device)
        keys = (device, default.group(1)) if default else (device,)
        return Route(self, "telemetry", keys)

    def key(self, text: str) -> str:
        key = super().key(text)
        return key.lower() if _EUI.fullmatch(key) else key

    def decode(
        self, payload: bytes, now: float, route: Route, options: DeviceOptions
    ) -> DecodeResult:
        document = _document(payload)
        named = _member(document, "end_device_ids", "device_id")
        if named is not None and named != route.keys[0]:
            raise DecodeError(
                "identity_mismatch",
                f"the topic names device {route.keys[0]!r}, the uplink {show(named)}",
            )
        if document.get("simulated") is True:
            raise DecodeError(
                "simulated_uplink", "a simulated uplink (TTS console), not a measurement"
            )
        uplink = document.get("uplink_message")
        if not isinstance(uplink, dict):
            raise DecodeError("bad_structure", "the message has no uplink_message object")
        receptions = uplink.get("rx_metadata")
        raw_time = uplink.get("received_at") or document.get("received_at")
        if raw_time is None and isinstance(receptions, list):
            raw_time = next(
                (r["time"] for r in receptions if isinstance(r, dict) and r.get("time")), None
            )
        when = now if raw_time is None else parse_time(raw_time)
        decoded = uplink.get("decoded_payload")
        if not isinstance(decoded, dict):
            raise DecodeError(
                "no_decoded_payload",
                "the uplink has no decoded_payload: give the device a payload formatter in "
                "The Things Stack",
            )
        strings = (
            self.numeric_strings if options.numeric_strings is None else options.numeric_strings
        )
        readings, rejected = readings_of(decoded, when, numeric_strings=strings)
        health = _best_gateway(receptions, "rssi", "snr", when)
        return DecodeResult("ttn-v3", readings, rejected, raw_time is None, health)

    def status(self, payload: bytes, now: float) -> StatusReport:
        raise bad_status("The Things Stack has no status topic of ours")


class ChirpStackProfile(Profile):
    """ChirpStack v4 MQTT integration with the JSON marshaler (``json=true``)."""

    name: ClassVar[str] = "chirpstack-v4"
    key_label: ClassVar[str] = "DevEUI"
    first_level = "application"
    numeric_strings: ClassVar[bool] = True

    def filters(self) -> tuple[TopicFilter, ...]:
        return (
            TopicFilter("application/+/device/+/event/up", telemetry=True),
            TopicFilter("application/+/device/+/event/status", telemetry=False),
        )

    def route(self, levels: list[str]) -> Route | None:
        if (
            len(levels) != 6
            or levels[0] != "application"
            or levels[2] != "device"
            or levels[4] != "event"
            or _EUI.fullmatch(levels[3]) is None
        ):
            return None
        kind = {"up": "telemetry", "status": "status"}.get(levels[5])
        if kind is None:
            return None
        return Route(self, kind, (levels[3].lower(),))  # type: ignore[arg-type]

    def key(self, text: str) -> str:
        return _eui(super().key(text), self.key_label)

    def decode(
        self, payload: bytes, now: float, route: Route, options: DeviceOptions
    ) -> DecodeResult:
        document = _document(payload)
        self._same_device(document, route)
        raw_time = document.get("time")
        when = now if raw_time is None else parse_time(raw_time)
        decoded = document.get("object")
        if not isinstance(decoded, dict):
            raise DecodeError(
                "no_decoded_payload",
                "the uplink has no object: give the device profile a codec in ChirpStack",
            )
        strings = (
            self.numeric_strings if options.numeric_strings is None else options.numeric_strings
        )
        readings, rejected = readings_of(decoded, when, numeric_strings=strings)
        health = _best_gateway(document.get("rxInfo"), "rssi", "snr", when)
        return DecodeResult("chirpstack-v4", readings, rejected, raw_time is None, health)

    def status(self, payload: bytes, now: float) -> StatusReport:
        try:
            document = _document(payload)
            raw_time = document.get("time")
            when = now if raw_time is None else parse_time(raw_time)
        except DecodeError as exc:
            raise bad_status(exc.detail) from None
        level = (
            None
            if document.get("batteryLevelUnavailable")
            else number(document.get("batteryLevel"))
        )
        if level is None and document.get("externalPowerSource") is not True:
            raise bad_status("a status event without batteryLevel or externalPowerSource")
        health = RadioHealth(when, battery_pct=level)
        return StatusReport(battery=level, health=health)

    @staticmethod
    def _same_device(document: dict[str, Any], route: Route) -> None:
        named = _member(document, "deviceInfo", "devEui")
        if isinstance(named, str) and named.lower() != route.keys[0]:
            raise DecodeError(
                "identity_mismatch",
                f"the topic names DevEUI {route.keys[0]}, the event {show(named)}",
            )
