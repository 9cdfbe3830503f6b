"""Energy (``/energy`` and ``/energy/{site}``): each municipal building's electricity
use per day over the last 30 days, the last 7 days against the same week a year
earlier, and the CO2e.  For the caretaker of a school and the climate office."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from starlette.responses import Response

from web.charts import bar_chart, source_url
from web.formatting import parse_time
from web.site import PageContext
from web.source import DocumentNotFound, all_rows, api_time

#: the days shown: the last 30 complete local days
DAYS = 30
#: "this week": the last 7 complete days, against the same weekdays 52 weeks before
WEEK = 7
YEAR_AGO = timedelta(weeks=52)
#: how the building table may be sorted (the default first)
SORTS = ("use", "name", "change")


@dataclass(slots=True)
class Building:
    site_id: str
    name: str
    days: list[dict[str, Any]]  # energy_daily rows, oldest first
    week_kwh: float | None  # the last 7 days, when all 7 are there
    year_ago_kwh: float | None  # the same weekdays a year before, when all 7 are there

    @property
    def kwh(self) -> float:
        return float(sum(d["kwh"] for d in self.days))

    @property
    def co2e_kg(self) -> float:
        return float(sum(d["co2e_kg"] for d in self.days))

    @property
    def per_day(self) -> float | None:
        return self.kwh / len(self.days) if self.days else None

    @property
    def change(self) -> float | None:
        if self.week_kwh is None or not self.year_ago_kwh:
            return None
        return self.week_kwh / self.year_ago_kwh - 1


def local_midnight(context: PageContext, day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=context.zone)


def _week_total(rows: list[dict[str, Any]], first: date) -> float | None:
    wanted = {(first + timedelta(days=i)).isoformat() for i in range(WEEK)}
    days = {r["day"]: r["kwh"] for r in rows if r["day"] in wanted}
    return sum(days.values()) if len(days) == WEEK else None


async def _buildings(context: PageContext, site_id: str | None = None) -> list[Building]:
    today = context.formats.local(context.now).date()
    first = today - timedelta(days=DAYS)
    week = today - timedelta(days=WEEK)
    site_filter = {"site": site_id} if site_id else {}
    window = {
        "from": api_time(local_midnight(context, first)),
        "to": api_time(local_midnight(context, today)),
    }
    rows = await all_rows(context.reader, "/v1/energy/daily", {**window, **site_filter})
    ago = week - YEAR_AGO
    last_year = await all_rows(
        context.reader,
        "/v1/energy/daily",
        {
            "from": api_time(local_midnight(context, ago)),
            "to": api_time(local_midnight(context, ago + timedelta(days=WEEK))),
            **site_filter,
        },
    )
    sites = (await context.reader.get("/v1/sites", {"kind": "building"}))["features"]
    buildings = []
    for site in sites:
        if site_id is not None and site["id"] != site_id:
            continue
        days = [r for r in rows if r["site_id"] == site["id"]]
        before = [r for r in last_year if r["site_id"] == site["id"]]
        buildings.append(
            Building(
                site["id"],
                site["properties"]["name"],
                days,
                _week_total(days, week),
                _week_total(before, ago),
            )
        )
    return buildings


def _sorted(buildings: list[Building], sort: str) -> list[Building]:
    if sort == "name":
        return sorted(buildings, key=lambda b: b.name)
    if sort == "change":
        return sorted(buildings, key=lambda b: (b.change is None, -(b.change or 0), b.name))
    return sorted(buildings, key=lambda b: (b.per_day is None, -(b.per_day or 0), b.name))


async def energy(context: PageContext) -> Response:
    sort = context.request.query_params.get("sort", SORTS[0])
    if sort not in SORTS:
        sort = SORTS[0]
    buildings = _sorted(await _buildings(context), sort)
    today = context.formats.local(context.now).date()
    factors = {d["grid_factor_g_per_kwh"] for b in buildings for d in b.days}
    return context.render(
        "energy.html",
        buildings=buildings,
        sort=sort,
        first_day=today - timedelta(days=DAYS),
        last_day=today - timedelta(days=1),
        week_first=today - timedelta(days=WEEK),
        year_ago_first=today - timedelta(days=WEEK) - YEAR_AGO,
        total_kwh=sum(b.kwh for b in buildings),
        total_co2e=sum(b.co2e_kg for b in buildings),
        grid_factors=sorted(factors),
        days=DAYS,
    )


async def building(context: PageContext) -> Response:
    site_id = context.request.path_params["site_id"]
    site = await context.reader.get(f"/v1/sites/{site_id}")
    if site["properties"]["kind"] != "building":
        raise DocumentNotFound(site_id)
    [found] = await _buildings(context, site_id)
    today = context.formats.local(context.now).date()
    window = {
        "site": site_id,
        "from": api_time(local_midnight(context, today - timedelta(days=DAYS))),
        "to": api_time(local_midnight(context, today)),
    }
    chart = bar_chart(
        "energy",
        source_url("/v1/energy/daily", window),
        found.days,
        time_key="day_start",
        value_key="kwh",
        unit="kWh",
        label=context.gettext("kWh per day"),
    )
    return context.render(
        "building.html",
        site=site,
        building=found,
        chart=chart,
        days=DAYS,
        week_first=today - timedelta(days=WEEK),
        year_ago_first=today - timedelta(days=WEEK) - YEAR_AGO,
        parse_time=parse_time,
        date_of=date.fromisoformat,
    )
