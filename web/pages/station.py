"""A station (``/stations/{site}``): PM2.5, PM10, NO2 and O3 over the last 24 hours,
7 or 30 days with the index bands behind each line, how often this year broke the
legal limits, and what each pollutant is.  For the resident who wants to know more
than "now", and for the journalist or councillor who asks "how often?"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.responses import Response

from web.air import (
    LEGAL_LIMITS,
    MAIN_POLLUTANTS,
    MIN_COVERAGE,
    OZONE_INFORMATION_THRESHOLD,
    POLLUTANTS,
    LegalLimit,
    Pollutant,
    level,
)
from web.charts import Chart, hourly_chart, source_url
from web.formatting import parse_time
from web.i18n import N_
from web.site import PageContext
from web.source import DocumentNotFound, all_rows, api_time
from web.warnings import page_warnings

#: the ranges a reader can pick, and how they are named
RANGES: dict[str, tuple[timedelta, str]] = {
    "24h": (timedelta(hours=24), N_("24 hours")),
    "7d": (timedelta(days=7), N_("7 days")),
    "30d": (timedelta(days=30), N_("30 days")),
}
DEFAULT_RANGE = "24h"


@dataclass(slots=True)
class PollutantView:
    pollutant: Pollutant
    measured: bool
    chart: Chart | None
    rows: list[dict[str, Any]]


@dataclass(slots=True)
class LimitView:
    limit: LegalLimit
    pollutant: Pollutant
    over: int  # hours or days above the limit value (with enough data)
    over_days: int  # days with at least one such hour (hourly limits)
    counted: int  # hours or days with enough data to count
    mean: float | None  # for an annual limit: the mean of the year so far

    @property
    def broken(self) -> bool:
        if self.limit.allowed is None:
            return self.mean is not None and self.mean > self.limit.value
        return self.over > self.limit.allowed


def next_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def _limits(
    context: PageContext,
    pollutant: Pollutant,
    daily: list[dict[str, Any]],
    hourly: list[dict[str, Any]],
) -> list[LimitView]:
    views = []
    for limit in LEGAL_LIMITS:
        if limit.pollutant != pollutant.key:
            continue
        if limit.period == "year":
            count = sum(r["count"] for r in daily)
            mean = sum(r["sum"] for r in daily) / count if count else None
            views.append(LimitView(limit, pollutant, 0, 0, len(daily), mean))
            continue
        rows = daily if limit.period == "day" else hourly
        valid = [r for r in rows if (r["coverage"] or 0) >= MIN_COVERAGE]
        over = [r for r in valid if r["mean"] > limit.value]
        days = {context.formats.local(parse_time(r["time"])).date() for r in over}
        views.append(LimitView(limit, pollutant, len(over), len(days), len(valid), None))
    return views


async def station(context: PageContext) -> Response:
    site_id = context.request.path_params["site_id"]
    reader = context.reader
    site = await reader.get(f"/v1/sites/{site_id}")
    series = (await reader.get("/v1/series", {"site": site_id, "kind": "air_quality"}))["data"]
    measured = {s["metric"] for s in series}
    if not measured & set(POLLUTANTS):
        raise DocumentNotFound(site_id)  # a building or a road: not an air-quality station
    now_row = next(
        (r for r in (await reader.get("/v1/aqi"))["data"] if r["site_id"] == site_id), None
    )
    chosen = context.request.query_params.get("range", DEFAULT_RANGE)
    if chosen not in RANGES:
        chosen = DEFAULT_RANGE
    span, _ = RANGES[chosen]
    end = next_hour(context.now)
    start = end - span
    local_now = context.formats.local(context.now)
    year_start = local_now.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)

    shown = [
        *MAIN_POLLUTANTS,
        *(k for k in POLLUTANTS if k not in MAIN_POLLUTANTS and k in measured),
    ]
    views = []
    limits: list[LimitView] = []
    for key in shown:
        pollutant = POLLUTANTS[key]
        if key not in measured:
            views.append(PollutantView(pollutant, False, None, []))
            continue
        path = f"/v1/sites/{site_id}/metrics/{key}/data"
        params = {"bucket": "1h", "from": api_time(start), "to": api_time(end)}
        rows = await all_rows(reader, path, params)
        chart = hourly_chart(
            key,
            source_url(path, params),
            key,
            rows,
            label=context.gettext("Hourly mean"),
            marks_label=context.gettext("Hour with suspect readings"),
            translate=context.gettext,
        )
        views.append(PollutantView(pollutant, True, chart, rows))
        if any(limit.pollutant == key for limit in LEGAL_LIMITS):
            year = {"from": api_time(year_start), "to": api_time(end)}
            daily = await all_rows(reader, path, {"bucket": "1d", **year})
            hourly = (
                await all_rows(reader, path, {"bucket": "1h", **year})
                if any(lim.pollutant == key and lim.period == "hour" for lim in LEGAL_LIMITS)
                else []
            )
            limits.extend(_limits(context, pollutant, daily, hourly))
    return context.render(
        "station.html",
        warnings=await page_warnings(context, site_id),
        site=site,
        site_id=site_id,
        now_row=now_row,
        now_level=level(now_row["level"]) if now_row else None,
        now_hour=parse_time(now_row["hour"]) if now_row else None,
        pollutants=views,
        limits=limits,
        ranges=RANGES,
        chosen=chosen,
        start=start,
        end=end,
        year=local_now.year,
        min_coverage=MIN_COVERAGE,
        ozone_threshold=OZONE_INFORMATION_THRESHOLD,
        parse_time=parse_time,
    )
