"""The /v1 root and the catalogue of what is measured where: sites (GeoJSON),
devices (public fields), metrics, series, and the latest value of every series."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from psycopg.sql import SQL as S
from starlette.responses import Response

from api import models, queries
from api.db import fetch_dicts, fetch_json_page, fetch_tuples
from api.json_sql import DATA_PLACEHOLDER, LATEST, page_json_query
from api.params import (
    DeviceFilter,
    KindFilter,
    MetricFilter,
    SiteFilter,
    SiteKind,
    device_path_id,
    metric_path_key,
    parse_bbox,
    site_path_id,
)
from api.problems import not_found
from api.responses import (
    MAX_AGE_CATALOGUE,
    MAX_AGE_LIVE,
    GeoJSONBytes,
    data_response,
    public_base_url,
    read_response,
    spliced_response,
)

router = APIRouter()

_NUMBER = r"-?[0-9]+(\.[0-9]+)?"
BBOX_PATTERN = rf"^{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}$"


@router.get(
    "",
    response_model=models.Root,
    summary="Entry point: links, licence and attribution",
    tags=["about"],
)
async def root(request: Request) -> Response:
    """What the API offers, under which licence, and how to credit the data."""
    settings = request.app.state.settings
    base = public_base_url(request)
    links = [
        ("self", "/v1", "This document"),
        ("service-desc", "/openapi.json", "OpenAPI 3.1 description"),
        ("service-doc", "/docs", "Interactive documentation"),
        ("license", None, "Norwegian Licence for Open Government Data (NLOD) 2.0"),
        ("sites", "/v1/sites", "Sites (GeoJSON)"),
        ("devices", "/v1/devices", "Devices"),
        ("metrics", "/v1/metrics", "What is measured, in which unit"),
        ("series", "/v1/series", "Time series: one device × one metric"),
        ("latest", "/v1/latest", "Latest value of every series"),
        ("aqi", "/v1/aqi", "European Air Quality Index now, per station"),
        ("energy-daily", "/v1/energy/daily", "Energy per building and day"),
        ("energy-hourly", "/v1/energy/hourly", "Energy per building and hour"),
        ("traffic-hourly", "/v1/traffic/hourly", "Traffic per counter and hour"),
        ("traffic-daily", "/v1/traffic/daily", "Traffic per counter and day"),
        ("traffic-adt", "/v1/traffic/adt", "Average daily traffic per counter"),
        ("export", "/v1/export", "Bulk exports (CSV, Parquet, GeoJSON)"),
        ("catalog", "/v1/catalog", "DCAT-AP-NO catalogue of the datasets"),
        ("status", "/v1/status", "Platform status: ingest, devices, quarantine"),
        ("website", "/", "The website: air quality now, energy, traffic, open data"),
    ]
    meta = request.app.state.meta
    document = {
        "title": f"smartby open data: {settings.city}",
        "description": (
            f"Open environmental sensor data of {settings.city}: air quality, energy use "
            "of municipal buildings and traffic, as measured, quality-checked and "
            "aggregated."
        ),
        "version": request.app.version,
        "links": [
            {"rel": rel, "href": meta["license_url"] if href is None else base + href, "title": t}
            for rel, href, t in links
        ],
        "meta": meta,
    }
    return read_response(request, document, max_age=MAX_AGE_CATALOGUE)


# ---------------------------------------------------------------------- sites


def _feature(row: tuple[Any, ...]) -> dict[str, Any]:
    site_id, name, kind, municipality, lon, lat, properties, devices = row
    return {
        "type": "Feature",
        "id": site_id,
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {
            "name": name,
            "kind": kind,
            "municipality": municipality,
            "devices": devices,
            "attributes": properties,
        },
    }


@router.get(
    "/sites",
    response_model=models.SiteCollection,
    response_class=GeoJSONBytes,
    summary="Sites as GeoJSON",
    tags=["catalogue"],
)
async def sites(
    request: Request,
    kind: Annotated[SiteKind | None, Query(description="Only sites of this kind.")] = None,
    bbox: Annotated[
        str | None,
        Query(
            description="Only sites inside this box: minlon,minlat,maxlon,maxlat (WGS 84).",
            examples=["17.3,68.4,17.5,68.5"],
            pattern=BBOX_PATTERN,
        ),
    ] = None,
) -> Response:
    """Where the sensors are: a GeoJSON FeatureCollection of sites (SensorThings
    Things with their Locations), each with its devices."""
    box = parse_bbox(bbox) if bbox is not None else None
    rows = await fetch_tuples(request, queries.sites_query(kind, box))
    document = {
        "type": "FeatureCollection",
        "features": [_feature(r) for r in rows],
        **request.app.state.meta,
    }
    return read_response(request, document, max_age=MAX_AGE_CATALOGUE, response_class=GeoJSONBytes)


@router.get(
    "/sites/{site_id}",
    response_model=models.SiteFeatureDocument,
    response_class=GeoJSONBytes,
    summary="One site as a GeoJSON Feature",
    tags=["catalogue"],
)
async def site(
    request: Request,
    site_id: Annotated[str, Path(description="The site's id.", examples=["narvik-sentrum"])],
) -> Response:
    """One site as a GeoJSON Feature (RFC 7946): its position as a Point, its name,
    kind, municipality and the ids of the devices there."""
    rows = await fetch_tuples(request, queries.sites_query(site_id=site_path_id(site_id)))
    if not rows:
        raise not_found("site", site_id)
    document = {**_feature(rows[0]), **request.app.state.meta}
    return read_response(request, document, max_age=MAX_AGE_CATALOGUE, response_class=GeoJSONBytes)


# ---------------------------------------------------------------------- devices


@router.get(
    "/devices",
    response_model=models.DeviceList,
    summary="Devices (public fields)",
    tags=["catalogue"],
)
async def devices(
    request: Request, kind: KindFilter = None, site_id: SiteFilter = None
) -> Response:
    """The sensors (SensorThings Sensors): kind, model, status, when last heard from,
    and the metrics each one reports."""
    rows = await fetch_dicts(request, queries.devices_query(kind, site_id))
    return data_response(request, rows, max_age=MAX_AGE_CATALOGUE)


@router.get(
    "/devices/{device_id}",
    response_model=models.DeviceDocument,
    summary="One device",
    tags=["catalogue"],
)
async def device(
    request: Request,
    device_id: Annotated[str, Path(description="The device's id.", examples=["aq-sentrum"])],
) -> Response:
    """One device's public fields: site, kind, maker and model, status, when it was
    last heard from and the metrics it measures (never its secret)."""
    query = queries.devices_query(device_id=device_path_id(device_id))
    rows = await fetch_dicts(request, query)
    if not rows:
        raise not_found("device", device_id)
    return data_response(request, rows[0], max_age=MAX_AGE_CATALOGUE)


# ---------------------------------------------------------------------- metrics


@router.get(
    "/metrics",
    response_model=models.MetricList,
    summary="The metric catalogue",
    tags=["catalogue"],
)
async def metrics(request: Request) -> Response:
    """Every metric: its canonical unit, definition URI and physical bounds
    (SensorThings ObservedProperties)."""
    rows = await fetch_dicts(request, queries.metrics_query())
    return data_response(request, rows, max_age=MAX_AGE_CATALOGUE)


@router.get(
    "/metrics/{key}",
    response_model=models.MetricDocument,
    summary="One metric",
    tags=["catalogue"],
)
async def metric(
    request: Request,
    key: Annotated[str, Path(description="The metric's key.", examples=["pm25"])],
) -> Response:
    """One metric of the catalogue: its canonical unit, definition URI, physical bounds
    (outside them a reading fails QC), how values combine and the resolution exports
    round to."""
    rows = await fetch_dicts(request, queries.metrics_query(metric_path_key(key)))
    if not rows:
        raise not_found("metric", key)
    return data_response(request, rows[0], max_age=MAX_AGE_CATALOGUE)


# ---------------------------------------------------------------------- series


@router.get(
    "/series",
    response_model=models.SeriesList,
    summary="Time series (one device × one metric)",
    tags=["catalogue"],
)
async def series(
    request: Request,
    site_id: SiteFilter = None,
    metric: MetricFilter = None,
    kind: KindFilter = None,
    device_id: DeviceFilter = None,
) -> Response:
    """The series (SensorThings Datastreams); their values are under
    /v1/series/{series_id}/data."""
    rows = await fetch_dicts(request, queries.series_query(site_id, metric, kind, device_id))
    return data_response(request, rows, max_age=MAX_AGE_CATALOGUE)


@router.get(
    "/latest",
    response_model=models.LatestList,
    summary="Latest value of every series",
    tags=["data"],
)
async def latest(
    request: Request,
    kind: KindFilter = None,
    metric: MetricFilter = None,
    site_id: SiteFilter = None,
) -> Response:
    """The latest reading of each series, with its time and QC flag.  Traffic metrics
    are only published in aggregates of 15 minutes or more, so theirs is the latest
    complete hour."""
    query = page_json_query(
        queries.latest_query(kind, metric, site_id), LATEST, page_size=None, order=S("q.id")
    )
    _, data, _ = await fetch_json_page(request, query)
    document = {"data": DATA_PLACEHOLDER, "meta": request.app.state.meta}
    return spliced_response(request, document, data, max_age=MAX_AGE_LIVE)
