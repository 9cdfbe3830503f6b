"""When a device counts as online: the one rule the status API, the website and the
operations dashboard share.

A device is *silent* when nothing was heard from it (telemetry or status) for longer
than three of its reporting intervals: traffic counters report every 15 minutes
(only aggregates of at least 15 minutes are published), air-quality and energy
devices at most every 5 minutes (devices/narvik.yaml).  *Offline* is what the device,
or its MQTT last will (MQTT v5 §3.1.2.5), said on its status topic.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

#: silence before a device counts as silent: three reporting intervals
SILENT_AFTER: dict[str, timedelta] = {
    "traffic": timedelta(minutes=45),
    "other": timedelta(minutes=15),
}

DeviceState = Literal["online", "silent", "offline", "never_seen", "disabled"]
#: every state, the ones that need someone's attention first
DEVICE_STATES: tuple[DeviceState, ...] = ("offline", "silent", "never_seen", "disabled", "online")


def silent_after(kind: str) -> timedelta:
    """How long a device of this kind may stay quiet and still count as online."""
    return SILENT_AFTER.get(kind, SILENT_AFTER["other"])


def device_state(
    *, kind: str, status: str, online: bool | None, last_seen: datetime | None, now: datetime
) -> DeviceState:
    """The device's state at ``now``: disabled in the registry, never heard from,
    offline by its own word, silent for too long, or online."""
    if status == "disabled":
        return "disabled"
    if last_seen is None:
        return "never_seen"
    if online is False:
        return "offline"
    if now - last_seen > silent_after(kind):
        return "silent"
    return "online"
