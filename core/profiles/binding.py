"""How one device's fields map to metrics, and the options of its profile: the part of a
device's registration that the profile layer reads.

A field map says, per field name or path (``SDS0X1/PM2.5``, ``pm_2_5``, ``ENERGY/Total``),
what the value is: a metric (``pm25``), a metric in a unit the payload does not state
(``{metric: energy, unit: Wh}``), device health (``{health: battery, unit: V}``), or
nothing worth keeping (``null``: the field is ignored, not quarantined).  The same
targets, declared once for everyone, are the catalogue's field aliases (the
``field_aliases`` table: ``PM2.5``, ``P2`` and ``SDS_P2`` are ``pm25``).

A name resolves through the device's map, then the aliases, then the metric keys; each
is tried for the whole path and for its last level, all in lower case
(`resolve_field`).  Everything here is checked when a device is registered or a
catalogue read, so that ingest meets only maps that make sense.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.profiles.registry import PROFILE_NAMES, profile_class
from core.units import dimension_of, is_known_unit

__all__ = [
    "HEALTH_FIELDS",
    "Binding",
    "BindingError",
    "FieldTarget",
    "check_binding",
    "field_map_json",
    "parse_field_map",
    "parse_field_target",
    "resolve_field",
]

#: device-health fields a payload value can be (the others come from radio metadata)
HEALTH_FIELDS: Final = ("battery",)
_METRIC_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MAX_FIELD: Final = 128


class BindingError(ValueError):
    """A device's profile settings that cannot work; the message says which and why."""


@dataclass(frozen=True, slots=True)
class FieldTarget:
    """What a payload field is."""

    metric: str | None = None
    """The metric key it is a reading of."""
    unit: str | None = None
    """The SenML unit of its values when the payload states none."""
    health: str | None = None
    """The device-health field it is (``battery``)."""

    @property
    def ignored(self) -> bool:
        """Neither a reading nor health: dropped on purpose (``TotalStartTime``)."""
        return self.metric is None and self.health is None

    def as_json(self) -> str | dict[str, str] | None:
        if self.ignored:
            return None
        if self.health is not None:
            return {"health": self.health, **({"unit": self.unit} if self.unit else {})}
        if self.unit is None:
            return self.metric
        return {"metric": str(self.metric), "unit": self.unit}


IGNORED: Final = FieldTarget()


@dataclass(frozen=True, slots=True)
class Binding:
    """A device's profile, its key in that profile's terms, field map and options."""

    profile: str = "smartby"
    key: str | None = None
    fields: Mapping[str, FieldTarget] = field(default_factory=dict)
    timezone: str | None = None
    numeric_strings: bool | None = None

    def options_json(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.timezone is not None:
            options["timezone"] = self.timezone
        if self.numeric_strings is not None:
            options["numeric_strings"] = self.numeric_strings
        return options


def parse_field_target(raw: object, where: str = "") -> FieldTarget:
    """A field map's value: a metric key, ``null``, or ``{metric|health, unit}``."""
    prefix = f"{where}: " if where else ""
    if raw is None:
        return IGNORED
    if isinstance(raw, str):
        return FieldTarget(metric=_metric(raw, prefix))
    if not isinstance(raw, Mapping):
        raise BindingError(f"{prefix}a field maps to a metric key, null, or {{metric, unit}}")
    unknown = sorted(str(k) for k in raw if k not in ("metric", "unit", "health"))
    if unknown:
        raise BindingError(
            f"{prefix}unknown key(s) {', '.join(unknown)}; expected metric, unit or health"
        )
    unit = raw.get("unit")
    if unit is not None and (not isinstance(unit, str) or not is_known_unit(unit)):
        raise BindingError(f"{prefix}unit {unit!r} is not a SenML unit (RFC 8428, RFC 8798)")
    health = raw.get("health")
    if health is not None:
        if "metric" in raw:
            raise BindingError(f"{prefix}a field is a metric or health, not both")
        if health not in HEALTH_FIELDS:
            raise BindingError(
                f"{prefix}health {health!r} is not one of {', '.join(HEALTH_FIELDS)}"
            )
        if unit is not None and unit != "%EL" and dimension_of(unit) != "voltage":
            raise BindingError(f"{prefix}a battery is in volts (V, mV) or %EL, not {unit!r}")
        return FieldTarget(health=str(health), unit=unit)
    if "metric" not in raw:
        raise BindingError(f"{prefix}give the metric (or health) the field is")
    return FieldTarget(metric=_metric(raw["metric"], prefix), unit=unit)


def parse_field_map(raw: object, where: str = "") -> dict[str, FieldTarget]:
    """A whole field map, keyed by lower-cased field name or path."""
    prefix = f"{where}: " if where else ""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise BindingError(f"{prefix}fields must be a mapping of field name to metric")
    fields: dict[str, FieldTarget] = {}
    for name, target in raw.items():
        if not isinstance(name, str) or not name.strip() or len(name) > _MAX_FIELD:
            raise BindingError(
                f"{prefix}field name {name!r} must be text of 1 to {_MAX_FIELD} characters"
            )
        key = name.strip().lower()
        if key in fields:
            raise BindingError(f"{prefix}field {name!r} is mapped twice")
        fields[key] = parse_field_target(target, f"{where}field {name!r}".lstrip())
    return fields


def field_map_json(fields: Mapping[str, FieldTarget]) -> dict[str, Any]:
    return {name: target.as_json() for name, target in fields.items()}


def check_binding(
    profile: str,
    key: str | None,
    fields: object = None,
    timezone: str | None = None,
    numeric_strings: bool | None = None,
) -> Binding:
    """A device's profile settings, checked and normalised; `BindingError` otherwise."""
    kind = profile_class(profile)
    if kind is None:
        raise BindingError(
            f"unknown profile {profile!r}; expected one of {', '.join(PROFILE_NAMES)}"
        )
    instance = kind()
    if profile == "smartby":
        if key is not None:
            raise BindingError("a smartby device is known by its device id: give it no topic")
    elif key is None:
        raise BindingError(f"a {profile} device needs its {instance.key_label} (topic)")
    else:
        try:
            key = instance.key(key)
        except ValueError as exc:
            raise BindingError(str(exc)) from None
    if timezone is not None:
        if not kind.local_time:
            raise BindingError(f"the {profile} profile's times carry their offset: no timezone")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BindingError(
                f"unknown time zone {timezone!r} (an IANA name like Europe/Oslo)"
            ) from None
    if numeric_strings is not None and not isinstance(numeric_strings, bool):
        raise BindingError(f"numeric_strings is true or false, not {numeric_strings!r}")
    return Binding(profile, key, parse_field_map(fields), timezone, numeric_strings)


def resolve_field(
    name: str, fields: Mapping[str, FieldTarget], aliases: Mapping[str, FieldTarget]
) -> FieldTarget | None:
    """What a reading's name is, by the device's map and then the aliases (whole path,
    then last level, lower case); None: try the name's last level as a metric key."""
    lowered = name.lower()
    tail = lowered[max(lowered.rfind("/"), lowered.rfind(":")) + 1 :]
    for table in (fields, aliases):
        if table:
            found = table.get(lowered)
            if found is None and tail != lowered:
                found = table.get(tail)
            if found is not None:
                return found
    return None


def _metric(raw: object, prefix: str) -> str:
    if not isinstance(raw, str) or not _METRIC_KEY.fullmatch(raw):
        raise BindingError(f"{prefix}{raw!r} is not a metric key (lower-case, like pm25)")
    return raw
