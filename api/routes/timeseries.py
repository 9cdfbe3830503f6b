"""Time series: raw readings or aggregates from the rollups, for a series or for a
site and metric, paged with cursors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from psycopg.sql import SQL as S
from starlette.responses import Response

from api import models, queries
from api.db import fetch_json_page, fetch_tuples
from api.json_sql import AGGREGATE_POINT, DATA_PLACEHOLDER, RAW_POINT, page_json_query
from api.params import (
    DEFAULT_SPAN,
    MAX_SERIES_ID,
    Bucket,
    Page,
    PageQuery,
    encode_cursor,
    metric_path_key,
    published_for_every_domain,
    site_path_id,
)
from api.problems import Problem, bad_parameter, not_found
from api.responses import MAX_AGE_DATA, spliced_response
from core.indicators import MIN_PUBLISHED_BUCKET_S

router = APIRouter(tags=["data"])

BucketParam = Annotated[
    Bucket,
    Query(
        description="raw: every reading with its QC flag; 1m, 1h, 1d: aggregates from the "
        "rollups (days are local days). 1m is there as long as the raw readings are kept "
        "(SMARTBY_RETENTION_RAW); 1h and 1d for ever. Traffic metrics: 1h or 1d only. "
        "Default range: one day before `to` for raw and 1m, 30 days for 1h, 365 days for 1d."
    ),
]


def too_fine(metric: str, bucket: str) -> Problem:
    return Problem(
        400,
        "Aggregate too fine",
        f"{metric} is traffic data, published only in aggregates of at least "
        f"{MIN_PUBLISHED_BUCKET_S // 60} minutes (the 15-minute privacy rule); "
        f"bucket={bucket} is finer: use bucket=1h or bucket=1d",
        parameter="bucket",
    )


def next_link(request: Request, cursor: str) -> str:
    return str(request.url.include_query_params(cursor=cursor))


async def data_page(
    request: Request,
    *,
    series_ids: list[int],
    metric: str,
    domain: str,
    unit: str,
    bucket: Bucket,
    page: PageQuery,
) -> Response:
    """One page of the series' values (several series: merged per bucket for
    aggregates, interleaved by time for raw readings)."""
    if domain in queries.AGGREGATE_ONLY_DOMAINS and not published_for_every_domain(bucket):
        raise too_fine(metric, bucket)
    settings = request.app.state.settings
    span = page.span(DEFAULT_SPAN[bucket], settings.api_max_range_days, settings.timezone)
    limit = page.limit
    after = page.after()
    if bucket == "raw":
        raw_after: tuple[datetime, int] | None = None
        if after is not None:
            if not after.key.isdigit() or int(after.key) > MAX_SERIES_ID:
                raise bad_parameter("cursor", "cursor does not belong to raw readings")
            raw_after = (after.time, int(after.key))
        rows = queries.raw_page_query(
            series_ids, span.start, span.end, after=raw_after, limit=limit + 1
        )
        page_query = page_json_query(
            rows,
            RAW_POINT,
            page_size=limit,
            keys=(S("q.time"), S("q.series_id")),
            order=S("q.time, q.series_id"),
        )
    else:
        rows = queries.rollup_page_query(
            series_ids,
            bucket,
            span.start,
            span.end,
            after=after.time if after is not None else None,
            limit=limit + 1,
            tz=settings.timezone,
        )
        page_query = page_json_query(
            rows, AGGREGATE_POINT, page_size=limit, keys=(S("q.bucket"),), order=S("q.bucket")
        )
    found, data, last = await fetch_json_page(request, page_query)
    next_url: str | None = None
    if found > limit:
        next_url = next_link(request, encode_cursor(*last))
    document = {
        "series": series_ids,
        "metric": metric,
        "unit": unit,
        "bucket": bucket,
        "from": span.start,
        "to": span.end,
        "data": DATA_PLACEHOLDER,
        "next": next_url,
        "meta": request.app.state.meta,
    }
    headers = {"link": f'<{next_url}>; rel="next"'} if next_url else None
    return spliced_response(request, document, data, max_age=MAX_AGE_DATA, headers=headers)


@router.get(
    "/series/{series_id}/data",
    response_model=models.DataPage,
    summary="Values of one series",
)
async def series_data(
    request: Request,
    series_id: Annotated[
        int, Path(ge=1, le=MAX_SERIES_ID, description="The series' id (see /v1/series).")
    ],
    page: Page,
    bucket: BucketParam = "1h",
) -> Response:
    """Raw readings (with QC flags) or per-bucket aggregates with coverage and quality
    counts, oldest first, in pages: follow `next` until it is null."""
    rows = await fetch_tuples(request, queries.series_info_query(series_id))
    if not rows:
        raise not_found("series", str(series_id))
    _, _, _, metric, domain, unit, _ = rows[0]
    return await data_page(
        request,
        series_ids=[series_id],
        metric=metric,
        domain=domain,
        unit=unit,
        bucket=bucket,
        page=page,
    )


@router.get(
    "/sites/{site_id}/metrics/{metric}/data",
    response_model=models.DataPage,
    summary="Values of one metric at one site",
)
async def site_metric_data(
    request: Request,
    site_id: Annotated[str, Path(description="The site's id.", examples=["narvik-sentrum"])],
    metric: Annotated[str, Path(description="The metric's key.", examples=["no2"])],
    page: Page,
    bucket: BucketParam = "1h",
) -> Response:
    """Like /v1/series/{series_id}/data for the site's series of this metric; where
    several devices at the site measure it, aggregates merge their readings per
    bucket and raw readings come interleaved (each with its series id)."""
    site_path_id(site_id)
    metric_path_key(metric)
    rows = await fetch_tuples(request, queries.site_metric_series_query(site_id, metric))
    site_exists, domain, unit, _, series_ids = rows[0]
    if not site_exists:
        raise not_found("site", site_id)
    if domain is None:
        raise not_found("metric", metric)
    if not series_ids:
        raise Problem(
            404,
            "Not found",
            f"site {site_id!r} has no series of metric {metric!r}",
            resource="series",
        )
    return await data_page(
        request,
        series_ids=list(series_ids),
        metric=metric,
        domain=domain,
        unit=unit,
        bucket=bucket,
        page=page,
    )
