"""The ``smartby`` profile: devices written for the platform (DESIGN.md, "MQTT contract").

Telemetry on ``<prefix>/<device id>/telemetry`` as SenML JSON, SenML CBOR or the plain
JSON object (`core.decode`); status on ``<prefix>/<device id>/status`` as ``online`` /
``offline`` (retained, and the last will) or a JSON object with ``status``, ``battery``
(V or %) and ``rssi`` (dBm).  The topic's middle level is the registry's device id.
"""

from __future__ import annotations

import math
from typing import ClassVar

import orjson

from core.decode import decode
from core.profiles.base import (
    DeviceOptions,
    Profile,
    Route,
    StatusReport,
    TopicFilter,
    bad_status,
)
from core.readings import DecodeResult

_KINDS = {"telemetry": "telemetry", "status": "status"}


class SmartbyProfile(Profile):
    name: ClassVar[str] = "smartby"
    key_label: ClassVar[str] = "device id"

    def __init__(self, prefix: str = "smartby") -> None:
        self.prefix = prefix
        self.first_level = prefix

    def filters(self) -> tuple[TopicFilter, ...]:
        return (
            TopicFilter(f"{self.prefix}/+/telemetry", telemetry=True),
            TopicFilter(f"{self.prefix}/+/status", telemetry=False),
        )

    def device_topics(self, key: str) -> tuple[str, ...]:
        # the same two as `core.broker.device_topics` (which cannot be imported here:
        # core.broker builds on this package); tests/core/test_profiles.py holds them equal
        return (f"{self.prefix}/{key}/telemetry", f"{self.prefix}/{key}/status")

    def route(self, levels: list[str]) -> Route | None:
        if len(levels) != 3 or levels[0] != self.prefix or not levels[1]:
            return None
        kind = levels[2]
        return Route(self, _KINDS.get(kind, "unknown"), (levels[1],), True, kind)  # type: ignore[arg-type]

    def decode(
        self, payload: bytes, now: float, route: Route, options: DeviceOptions
    ) -> DecodeResult:
        # the profile's default is False: one comparison on the hot path, no call
        return decode(payload, now, numeric_strings=options.numeric_strings is True)

    def status(self, payload: bytes, now: float) -> StatusReport:
        text = payload.strip()
        if text in (b"online", b"offline"):
            return StatusReport(online=text == b"online")
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            raise bad_status("status is neither online/offline nor a JSON object")
        state = doc.get("status")
        online = state == "online" if state in ("online", "offline") else None
        battery, rssi = finite(doc.get("battery")), finite(doc.get("rssi"))
        if online is None and battery is None and rssi is None:
            raise bad_status("status object has no status, battery or rssi")
        return StatusReport(online, battery, rssi)

    def patterns(self) -> str:
        return f"{self.prefix}/<device>/telemetry or status"


def finite(value: object) -> float | None:
    """A JSON number that is finite, else None (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
