"""The built-in profiles by name, and the router that finds a topic's profile."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from core.profiles.base import Profile, Route, TopicFilter
from core.profiles.esphome import ESPHomeProfile
from core.profiles.lorawan import ChirpStackProfile, TTNProfile
from core.profiles.smartby import SmartbyProfile
from core.profiles.tasmota import TasmotaProfile

_CLASSES: Final[dict[str, type[Profile]]] = {
    cls.name: cls
    for cls in (SmartbyProfile, TasmotaProfile, ESPHomeProfile, TTNProfile, ChirpStackProfile)
}
#: every profile a device may have, in the order the documentation lists them
PROFILE_NAMES: Final = tuple(_CLASSES)
#: bound on the route cache (topics are few per device, but a flood of random ones
#: must not grow it without limit)
_ROUTE_CACHE_LIMIT: Final = 100_000


def profile_class(name: str) -> type[Profile] | None:
    return _CLASSES.get(name)


def make_profile(name: str, prefix: str = "smartby") -> Profile:
    """The profile called ``name``; the smartby profile uses the topic ``prefix``."""
    kind = _CLASSES.get(name)
    if kind is None:
        raise ValueError(f"unknown profile {name!r}; expected one of {', '.join(PROFILE_NAMES)}")
    return SmartbyProfile(prefix) if kind is SmartbyProfile else kind()


class Router:
    """The enabled profiles of one broker connection, and which one a topic belongs to.

    Most profiles' topics start with a fixed level (``tele``, ``v3``, ``application``,
    the smartby prefix), so a topic is offered to the profile of its first level, and
    only then to the profiles whose first level is free (ESPHome's node name).  A
    topic's route is remembered: devices publish to the same few topics all day."""

    def __init__(self, names: Iterable[str], prefix: str = "smartby") -> None:
        self.profiles = tuple(make_profile(name, prefix) for name in dict.fromkeys(names))
        self._first: dict[str, list[Profile]] = {}
        self._anywhere: list[Profile] = []
        for profile in self.profiles:
            if profile.first_level is None:
                self._anywhere.append(profile)
            else:
                self._first.setdefault(profile.first_level, []).append(profile)
        self._routes: dict[str, Route | None] = {}

    def route(self, topic: str) -> Route | None:
        try:
            return self._routes[topic]
        except KeyError:
            pass
        levels = topic.split("/")
        found = None
        for profile in (*self._first.get(levels[0], ()), *self._anywhere):
            found = profile.route(levels)
            if found is not None:
                break
        if len(self._routes) >= _ROUTE_CACHE_LIMIT:
            self._routes.clear()
        self._routes[topic] = found
        return found

    def filters(self) -> list[TopicFilter]:
        return [f for profile in self.profiles for f in profile.filters()]

    def profile(self, name: str) -> Profile | None:
        return next((p for p in self.profiles if p.name == name), None)

    def describe(self) -> str:
        """The enabled profiles' topics, for a ``bad_topic`` detail."""
        return "; ".join(f"{p.name}: {p.patterns()}" for p in self.profiles)
