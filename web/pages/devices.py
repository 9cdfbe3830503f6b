"""Devices (``/devices`` and ``/devices/{id}``): for device owners and the operators on
duty.  Which sensors are online, silent or offline, when each was last heard from,
its readings of the last 24 hours by quality flag, and its quarantined messages by
reason (counts only; the payloads stay behind the admin key)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from core.health import DEVICE_STATES
from web.formatting import parse_time
from web.i18n import N_
from web.site import PageContext

KINDS: dict[str, str] = {
    "air_quality": N_("Air quality"),
    "energy": N_("Energy"),
    "traffic": N_("Traffic"),
}
STATES: dict[str, str] = {
    "online": N_("Online"),
    "silent": N_("Silent"),
    "offline": N_("Offline"),
    "never_seen": N_("Never heard from"),
    "disabled": N_("Disabled"),
}
#: QC flags as the API names them, in the order a reader looks for trouble
FLAGS: dict[str, str] = {
    "good": N_("Good"),
    "not_evaluated": N_("Not evaluated"),
    "suspect": N_("Suspect"),
    "fail": N_("Failed"),
    "missing": N_("Missing"),
}
#: the quarantine reasons a reader will meet most (ingest/pipeline.py, core/decode.py),
#: in plain words; others are shown by their code
REASONS: dict[str, str] = {
    "undecodable": N_("The message could not be read"),
    "unknown_device": N_("No device is registered under this name"),
    "device_disabled": N_("The device is disabled"),
    "unknown_metric": N_("A value for something the platform does not measure"),
    "bad_unit": N_("A unit that cannot be converted"),
    "time_too_old": N_("A time too far in the past"),
    "time_in_future": N_("A time in the future (the device's clock is wrong)"),
    "non_finite": N_("A value that is not a number"),
    "non_numeric": N_("A value that is not a number"),
    "oversized": N_("The message is too large"),
    "must_understand": N_("A field the platform must understand but does not"),
    "bad_time": N_("A time that cannot be read"),
    "bad_value": N_("A value that cannot be read"),
}


def _order(device: dict[str, Any]) -> tuple[int, str]:
    return DEVICE_STATES.index(device["state"]), device["device_id"]


async def devices(context: PageContext) -> Response:
    kind = context.request.query_params.get("kind")
    params = {"kind": kind} if kind in KINDS else {}
    document = await context.reader.get("/v1/status/devices", params)
    sites = {f["id"]: f for f in (await context.reader.get("/v1/sites"))["features"]}
    rows = sorted(document["data"], key=_order)
    counts = {state: sum(1 for d in rows if d["state"] == state) for state in STATES}
    return context.render(
        "devices.html",
        devices=rows,
        sites=sites,
        kind=params.get("kind"),
        kinds=KINDS,
        states=STATES,
        counts=counts,
        window_start=parse_time(document["from"]),
        window_end=parse_time(document["to"]),
        parse_time=parse_time,
    )


async def device(context: PageContext) -> Response:
    device_id = context.request.path_params["device_id"]
    health = await context.reader.get(f"/v1/devices/{device_id}/health")
    public = (await context.reader.get(f"/v1/devices/{device_id}"))["data"]
    data = health["data"]
    site = await context.reader.get(f"/v1/sites/{data['site_id']}") if data["site_id"] else None
    return context.render(
        "device.html",
        device=data,
        public=public,
        site=site,
        kinds=KINDS,
        states=STATES,
        flags=FLAGS,
        reasons=REASONS,
        window_start=parse_time(health["from"]),
        window_end=parse_time(health["to"]),
        parse_time=parse_time,
    )
