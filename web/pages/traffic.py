"""Traffic (``/traffic`` and ``/traffic/{device}``): vehicles per day and the share
of heavy vehicles at each counter, and its average daily traffic (ADT).  Only the
aggregates the API publishes appear: days and the ADT, never a single vehicle or a
period under 15 minutes.  For residents, planners and the road owner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from starlette.responses import Response

from web.charts import bar_chart, source_url
from web.pages.energy import DAYS, local_midnight
from web.site import PageContext
from web.source import DocumentNotFound, all_rows, api_time


@dataclass(slots=True)
class Counter:
    device_id: str
    site_id: str | None
    name: str
    adt: dict[str, Any] | None
    days: list[dict[str, Any]]  # traffic_daily rows, oldest first

    @property
    def yesterday(self) -> dict[str, Any] | None:
        return self.days[-1] if self.days else None


def _window(context: PageContext) -> dict[str, str]:
    today = context.formats.local(context.now).date()
    return {
        "from": api_time(local_midnight(context, today - timedelta(days=DAYS))),
        "to": api_time(local_midnight(context, today)),
    }


async def _counters(context: PageContext, device_id: str | None = None) -> list[Counter]:
    reader = context.reader
    devices = (await reader.get("/v1/devices", {"kind": "traffic"}))["data"]
    sites = {f["id"]: f for f in (await reader.get("/v1/sites"))["features"]}
    device_filter = {"device": device_id} if device_id else {}
    adts = {a["device_id"]: a for a in (await reader.get("/v1/traffic/adt", device_filter))["data"]}
    rows = await all_rows(reader, "/v1/traffic/daily", {**_window(context), **device_filter})
    counters = []
    for device in devices:
        if device_id is not None and device["id"] != device_id:
            continue
        site = sites.get(device["site_id"] or "")
        counters.append(
            Counter(
                device["id"],
                device["site_id"],
                site["properties"]["name"] if site else device["id"],
                adts.get(device["id"]),
                [r for r in rows if r["device_id"] == device["id"]],
            )
        )
    return sorted(counters, key=lambda c: c.name)


async def traffic(context: PageContext) -> Response:
    counters = await _counters(context)
    today = context.formats.local(context.now).date()
    return context.render(
        "traffic.html", counters=counters, yesterday=today - timedelta(days=1), days=DAYS
    )


async def counter(context: PageContext) -> Response:
    device_id = context.request.path_params["device_id"]
    device = (await context.reader.get(f"/v1/devices/{device_id}"))["data"]
    if device["kind"] != "traffic":
        raise DocumentNotFound(device_id)
    [found] = await _counters(context, device_id)
    window = {"device": device_id, **_window(context)}
    chart = bar_chart(
        "volume",
        source_url("/v1/traffic/daily", window),
        found.days,
        time_key="day_start",
        value_key="volume",
        unit=context.gettext("vehicles"),
        label=context.gettext("Vehicles per day"),
    )
    return context.render(
        "counter.html", counter=found, chart=chart, days=DAYS, date_of=date.fromisoformat
    )
