"""Device profiles: how devices that were not written for smartby talk, turned into the
readings ingest stores.  `base` says what a profile is; one module per kind of device
(`smartby`, `tasmota`, `esphome`, `lorawan`); `binding` holds a device's field map and
options; `registry` the profiles by name and the topic router."""

from core.profiles.base import DeviceOptions, Profile, Route, StatusReport, TopicFilter
from core.profiles.binding import (
    Binding,
    BindingError,
    FieldTarget,
    check_binding,
    parse_field_map,
    parse_field_target,
    resolve_field,
)
from core.profiles.registry import PROFILE_NAMES, Router, make_profile, profile_class

__all__ = [
    "PROFILE_NAMES",
    "Binding",
    "BindingError",
    "DeviceOptions",
    "FieldTarget",
    "Profile",
    "Route",
    "Router",
    "StatusReport",
    "TopicFilter",
    "check_binding",
    "make_profile",
    "parse_field_map",
    "parse_field_target",
    "profile_class",
    "resolve_field",
]
