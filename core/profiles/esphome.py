"""The ``esphome`` profile: ESPHome nodes with the MQTT client component.

Each sensor publishes its state alone, as text, on
``<node>/sensor/<object_id>/state`` (``21.5``), and the node its availability on
``<node>/status`` (``online`` retained at connect, ``offline`` as its last will):
https://esphome.io/components/mqtt.html.  The registry key is the node name (the
``topic_prefix``, which defaults to the node's name).

The state carries no time: a reading takes the time it was received, and a broker's
redelivery of it keeps that time (`ingest.redelivery`).  ``nan`` is ESPHome's way of
saying a sensor has no state; it is rejected as ``no_value``.
"""

from __future__ import annotations

from typing import ClassVar

from core.profiles.base import (
    DeviceOptions,
    Profile,
    Route,
    StatusReport,
    TopicFilter,
    bad_status,
)
from core.readings import DecodeError, DecodeResult, Reading, RejectedRecord, numeric_text, show

#: first topic levels an ESPHome node may not take (`ESPHomeProfile.key`)
_RESERVED_FIRST_LEVELS = frozenset({"v1.1"})


class ESPHomeProfile(Profile):
    name: ClassVar[str] = "esphome"
    key_label: ClassVar[str] = "ESPHome node name"
    first_level = None  # the node name: any
    numeric_strings: ClassVar[bool] = True

    def filters(self) -> tuple[TopicFilter, ...]:
        return (
            TopicFilter("+/sensor/+/state", telemetry=True),
            TopicFilter("+/status", telemetry=False),
        )

    def device_topics(self, key: str) -> tuple[str, ...]:
        return (f"{key}/sensor/+/state", f"{key}/status")

    def key(self, text: str) -> str:
        """A node name is a topic's first level, so it may not be one the platform or
        the broker owns: ``$...`` (``$SYS``, ``$CONTROL``, ``$share``: MQTT v5 §4.7.2)
        or ``v1.1`` (the SensorThings stream, `core.broker.STA_TOPICS`, which the public
        broker carries to anybody): the node's role would let it publish there."""
        key = super().key(text)
        if key.startswith("$") or key in _RESERVED_FIRST_LEVELS:
            raise ValueError(
                f"{self.key_label} {key!r} is a topic level the platform owns; rename the "
                "node (or set its topic_prefix)"
            )
        return key

    def route(self, levels: list[str]) -> Route | None:
        node = levels[0]
        if not node or node.startswith("$"):  # $SYS and the like are the broker's
            return None
        if len(levels) == 4 and levels[1] == "sensor" and levels[3] == "state" and levels[2]:
            return Route(self, "telemetry", (node,), detail=levels[2])
        if len(levels) == 2 and levels[1] == "status":
            return Route(self, "status", (node,))
        return None

    def decode(
        self, payload: bytes, now: float, route: Route, options: DeviceOptions
    ) -> DecodeResult:
        try:
            text = payload.decode("ascii")
        except UnicodeDecodeError:
            raise DecodeError("undecodable", "a sensor state is a number as ASCII text") from None
        field = route.detail
        value = numeric_text(text)
        if value is not None:
            return DecodeResult("esphome", [Reading(field, now, value, None, False)], [], True)
        if text.strip().lower() == "nan":
            reason, detail = "no_value", f"{field}: the sensor has no state (nan)"
        else:
            reason, detail = "non_numeric", f"{field}: {show(text)} is not a number"
        return DecodeResult("esphome", [], [RejectedRecord(0, field, reason, detail)], True)

    def status(self, payload: bytes, now: float) -> StatusReport:
        text = payload.strip().lower()
        if text in (b"online", b"offline"):
            return StatusReport(online=text == b"online")
        raise bad_status(f"availability is online or offline, not {show(payload[:40])}")
