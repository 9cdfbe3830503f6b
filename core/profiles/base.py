"""What every device profile is: a topic matcher and a payload decoder.

A profile turns one device's MQTT topics and payloads into the readings of
`core.readings`.  It says which topic filters a worker subscribes to (`filters`),
which of a topic's levels name the device (`route`: the Tasmota topic, the ESPHome
node, the LoRaWAN device id or DevEUI — mapped through the registry to a device id;
for ``smartby`` the level *is* the device id), and how a payload becomes readings
(`decode`) or a device status (`status`).  Decoding knows nothing of metrics: a
reading is named by the payload's own field path (``SDS0X1/PM2.5``), and ingest maps
that name to a metric through the device's field map and the catalogue's aliases.

The same `decode` serves any transport: an HTTP push route hands it the device's body
with a `Route` of its own making (`Route.direct`), and gets the same readings an MQTT
message would have given.  Profiles hold no state and do no I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import tzinfo
from typing import ClassVar, Final, Literal

from core.readings import DecodeError, DecodeResult, RadioHealth

__all__ = [
    "DeviceOptions",
    "Profile",
    "Route",
    "StatusReport",
    "TopicFilter",
]

Kind = Literal["telemetry", "status", "unknown"]


@dataclass(frozen=True, slots=True)
class TopicFilter:
    """One subscription of a profile (MQTT v5 §4.7)."""

    filter: str
    #: telemetry is subscribed without retained messages (a retained reading was stored
    #: when it was published, MQTT v5 §3.8.3.1 Retain Handling 2); status keeps them,
    #: because a retained ``online`` says what a device is now
    telemetry: bool


@dataclass(frozen=True, slots=True)
class Route:
    """Where a topic points: the profile, the kind of message and the device's keys."""

    profile: Profile
    kind: Kind
    #: the device's identity in the profile's own terms, most specific first
    keys: tuple[str, ...]
    #: ``keys[0]`` is the registry's device id itself (the smartby profile, HTTP push)
    direct: bool = False
    #: what the topic says beyond the device: the ESPHome object id, the smartby kind
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DeviceOptions:
    """A device's settings that change how its payloads read."""

    #: the zone of payload times written without a UTC offset (Tasmota's local clock)
    timezone: tzinfo | None = None
    #: numbers written as text are numbers; None: the profile's default
    numeric_strings: bool | None = None


DEFAULT_OPTIONS: Final = DeviceOptions()


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What a status message said; None where it said nothing."""

    online: bool | None = None
    battery: float | None = None
    rssi: float | None = None
    health: RadioHealth | None = None


class Profile(ABC):
    """A way devices talk.  Subclasses are stateless apart from their configuration."""

    #: the profile's name in the registry and the catalogue
    name: ClassVar[str]
    #: what a registry key of this profile is, for messages and help texts
    key_label: ClassVar[str]
    #: the first topic level every topic of the profile starts with; None: any
    first_level: str | None = None
    #: whether numbers written as text count as numbers unless a device says otherwise
    numeric_strings: ClassVar[bool] = False
    #: whether payload times may be local times without an offset (then the device's
    #: time zone applies)
    local_time: ClassVar[bool] = False

    @abstractmethod
    def filters(self) -> tuple[TopicFilter, ...]:
        """The topic filters a worker subscribes to for this profile."""

    @abstractmethod
    def route(self, levels: list[str]) -> Route | None:
        """The route of a topic split at ``/``, or None when it is not this profile's."""

    @abstractmethod
    def decode(
        self, payload: bytes, now: float, route: Route, options: DeviceOptions
    ) -> DecodeResult:
        """The readings of one telemetry payload received at ``now``; ``DecodeError``
        when nothing in it is usable."""

    @abstractmethod
    def status(self, payload: bytes, now: float) -> StatusReport:
        """What one status payload says; ``DecodeError("bad_status", …)`` otherwise."""

    def device_topics(self, key: str) -> tuple[str, ...]:
        """What a device of this profile with registry key ``key`` publishes on the
        platform's broker: its dynamic-security role allows exactly these (each may be
        a filter) and nothing else (`devices.broker_plan`).  None by default: a LoRaWAN
        device never logs in to the platform's broker; its network server's
        integration is an ingest source (`ingest.sources`)."""
        return ()

    def direct(self, device_id: str, detail: str = "") -> Route:
        """The route of a payload whose device is known already (HTTP push with the
        device's own secret): decode it as if it came on the device's topic."""
        return Route(self, "telemetry", (device_id,), True, detail)

    def strings(self, options: DeviceOptions) -> bool:
        """Whether this device's numbers written as text are numbers."""
        chosen = options.numeric_strings
        return self.numeric_strings if chosen is None else chosen

    def key(self, text: str) -> str:
        """A registry key as stored: checked, and normalised (EUIs in lower case).
        Raises ValueError with a sentence saying what is wrong."""
        key = text.strip()
        if not key or any(c in key for c in "/+#\0") or len(key) > 128:
            raise ValueError(
                f"{self.key_label} {text!r} must be one MQTT topic level: no / + # and at "
                "most 128 characters"
            )
        return key

    def patterns(self) -> str:
        """The profile's topics, for a quarantine detail."""
        return ", ".join(f.filter for f in self.filters())


def bad_status(detail: str) -> DecodeError:
    return DecodeError("bad_status", detail)
