"""Air now (``/``): a map and a list of the air-quality stations, each with its
European Air Quality Index level in words, the pollutant that set it, the hour it
refers to and the EEA's health advice.  For everyone in town, on a phone first.

The list is also served alone (``/air-now/stations``) for the page's script to swap
in every minute, so the words come from the same template in both languages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.responses import Response

from web.air import LEVELS, POLLUTANTS, Level, Pollutant, bands, level
from web.formatting import parse_time
from web.site import PageContext
from web.warnings import page_warnings

#: an index older than this is not "now": the station says it has no valid hour
STALE_AFTER = timedelta(hours=3)


@dataclass(frozen=True, slots=True)
class Station:
    site_id: str
    name: str
    lon: float
    lat: float
    level: Level | None
    hour: datetime | None  # start of the hour the level refers to
    dominant: Pollutant | None
    concentration: float | None  # the dominant pollutant's hourly mean
    stale: bool  # the latest valid hour is older than STALE_AFTER


async def air_stations(context: PageContext) -> list[Station]:
    """Every site with an air-quality device, by name, with its latest index."""
    reader = context.reader
    devices = await reader.get("/v1/devices", {"kind": "air_quality"})
    sites = {f["id"]: f for f in (await reader.get("/v1/sites"))["features"]}
    latest = {row["site_id"]: row for row in (await reader.get("/v1/aqi"))["data"]}
    stations = []
    for site_id in sorted({d["site_id"] for d in devices["data"] if d["site_id"]}):
        site = sites[site_id]
        lon, lat = site["geometry"]["coordinates"]
        row: dict[str, Any] | None = latest.get(site_id)
        hour = parse_time(row["hour"]) if row else None
        dominant = POLLUTANTS.get(row["dominant"]) if row else None
        stations.append(
            Station(
                site_id,
                site["properties"]["name"],
                lon,
                lat,
                level(row["level"]) if row else None,
                hour,
                dominant,
                row[dominant.key] if row and dominant else None,
                hour is None or context.now - hour > STALE_AFTER,
            )
        )
    return sorted(stations, key=lambda s: s.name)


def _values(context: PageContext, stations: list[Station]) -> dict[str, Any]:
    fresh = [s.hour for s in stations if s.hour is not None and not s.stale]
    return {
        "stations": stations,
        "newest_hour": max(fresh) if fresh else None,
        "stale_hours": int(STALE_AFTER / timedelta(hours=1)),
        "today": context.formats.local(context.now).date(),
    }


async def air_now(context: PageContext) -> Response:
    stations = await air_stations(context)
    return context.render(
        "air_now.html",
        warnings=await page_warnings(context),
        levels=LEVELS,
        band_table=[(p, bands(p.key)) for p in POLLUTANTS.values()],
        **_values(context, stations),
    )


async def air_now_stations(context: PageContext) -> Response:
    stations = await air_stations(context)
    return context.render("air_now_stations.html", **_values(context, stations))
