"""Indicators: the European Air Quality Index, energy per building, traffic per
counter (only aggregates of 15 minutes or more exist for traffic)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from api import models, queries
from api.db import fetch_dicts, fetch_tuples
from api.params import DeviceFilter, Page, PageQuery, SiteFilter, encode_cursor, site_path_id
from api.problems import not_found
from api.responses import MAX_AGE_DATA, MAX_AGE_LIVE, data_response, read_response
from api.routes.timeseries import next_link
from core.indicators import AQI_LEVEL_NAMES

router = APIRouter(tags=["indicators"])


def _label(row: dict[str, Any]) -> dict[str, Any]:
    row["label"] = AQI_LEVEL_NAMES[row["level"] - 1]
    return row


async def indicator_page(
    request: Request,
    table: queries.IndicatorTable,
    page: PageQuery,
    **equal: str | None,
) -> Response:
    """One page of the table's rows in the requested range (default: the table's
    default span), filtered by equality on the named columns."""
    settings = request.app.state.settings
    span = page.span(table.default_span, settings.api_max_range_days, settings.timezone)
    limit = page.limit
    rows = await fetch_dicts(
        request,
        queries.indicator_page_query(
            table, span.start, span.end, equal=equal, after=page.after(), limit=limit + 1
        ),
    )
    next_url: str | None = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_url = next_link(
            request, encode_cursor(last[table.time_column], last[table.key_column])
        )
    if table is queries.AQI_HOURLY:
        rows = [_label(r) for r in rows]
    document = {
        "from": span.start,
        "to": span.end,
        "data": rows,
        "next": next_url,
        "meta": request.app.state.meta,
    }
    headers = {"link": f'<{next_url}>; rel="next"'} if next_url else None
    return read_response(request, document, max_age=MAX_AGE_DATA, headers=headers)


# ---------------------------------------------------------------------- air quality

_AQI_NOW_FIELDS = (
    "site_id",
    "site_name",
    "lon",
    "lat",
    "hour",
    "level",
    "dominant",
    "pm25",
    "pm10",
    "no2",
    "o3",
    "so2",
)


@router.get("/aqi", response_model=models.AqiNow, summary="Air quality index now, per station")
async def aqi_now(request: Request) -> Response:
    """Each station's latest hourly European Air Quality Index (EEA, 2024 bands; the
    station's level is its worst pollutant's), with the hourly means that set it."""
    rows = await fetch_tuples(request, queries.aqi_now_query())
    data = [_label(dict(zip(_AQI_NOW_FIELDS, row, strict=True))) for row in rows]
    return data_response(request, data, max_age=MAX_AGE_LIVE)


@router.get("/aqi/{site_id}", response_model=models.AqiHistory, summary="Air quality index history")
async def aqi_history(
    request: Request,
    site_id: Annotated[
        str, Path(description="The station's site id.", examples=["narvik-sentrum"])
    ],
    page: Page,
) -> Response:
    """The station's hourly index, oldest first (default: the last 7 days)."""
    site_path_id(site_id)
    exists = await fetch_tuples(request, queries.sites_query(site_id=site_id))
    if not exists:
        raise not_found("site", site_id)
    return await indicator_page(request, queries.AQI_HOURLY, page, site_id=site_id)


# ---------------------------------------------------------------------- energy


@router.get(
    "/energy/daily", response_model=models.EnergyDaily, summary="Energy per building and day"
)
async def energy_daily(
    request: Request,
    page: Page,
    site_id: SiteFilter = None,
) -> Response:
    """kWh per building and local day (from meter registers, or power where a meter
    has none), with CO2e at the grid factor in force and the share of the day the
    readings covered.  Days whose start is in [from, to); default: the last 90 days."""
    return await indicator_page(request, queries.ENERGY_DAILY, page, site_id=site_id)


@router.get(
    "/energy/hourly", response_model=models.EnergyHourly, summary="Energy per building and hour"
)
async def energy_hourly(
    request: Request,
    page: Page,
    site_id: SiteFilter = None,
) -> Response:
    """kWh and CO2e per building and hour; default: the last 7 days."""
    return await indicator_page(request, queries.ENERGY_HOURLY, page, site_id=site_id)


# ---------------------------------------------------------------------- traffic


@router.get(
    "/traffic/hourly", response_model=models.TrafficHourly, summary="Traffic per counter and hour"
)
async def traffic_hourly(
    request: Request,
    page: Page,
    device_id: DeviceFilter = None,
    site_id: SiteFilter = None,
) -> Response:
    """Vehicles, heavy vehicles, mean speed and heavy share per counter and hour
    (only aggregates of 15 minutes or more are published); default: the last 7 days."""
    return await indicator_page(
        request, queries.TRAFFIC_HOURLY, page, device_id=device_id, site_id=site_id
    )


@router.get(
    "/traffic/daily", response_model=models.TrafficDaily, summary="Traffic per counter and day"
)
async def traffic_daily(
    request: Request,
    page: Page,
    device_id: DeviceFilter = None,
    site_id: SiteFilter = None,
) -> Response:
    """Traffic per counter and local day; default: the last 90 days."""
    return await indicator_page(
        request, queries.TRAFFIC_DAILY, page, device_id=device_id, site_id=site_id
    )


@router.get("/traffic/adt", response_model=models.TrafficAdtList, summary="Average daily traffic")
async def traffic_adt(
    request: Request, device_id: DeviceFilter = None, site_id: SiteFilter = None
) -> Response:
    """Per counter: the mean daily volume over its fully reported days of the last
    365 days."""
    rows = await fetch_dicts(request, queries.traffic_adt_query(device_id, site_id))
    return data_response(request, rows, max_age=MAX_AGE_DATA)
