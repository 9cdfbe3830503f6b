"""Time series: raw readings or aggregates from the rollups, for a series or for a
site and metric, paged with cursors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from api import models, queries
from api.db import fetch_tuples
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
from api.responses import MAX_AGE_DATA, read_response
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
    data: list[dict[str, Any]]
    next_cursor: str | None = None
    if bucket == "raw":
        raw_after: tuple[datetime, int] | None = None
        if after is not None:
            if not after.key.isdigit() or int(after.key) > MAX_SERIES_ID:
                raise bad_parameter("cursor", "cursor does not belong to raw readings")
            raw_after = (after.time, int(after.key))
        rows = await fetch_tuples(
            request,
            queries.raw_page_query(
                series_ids, span.start, span.end, after=raw_after, limit=limit + 1
            ),
        )
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1][0], rows[-1][1])
        data = [{"time": t, "series_id": s, "value": v, "quality": q} for t, s, v, q in rows]
    else:
        rows = await fetch_tuples(
            request,
            queries.rollup_page_query(
                series_ids,
                bucket,
                span.start,
                span.end,
                after=after.time if after is not None else None,
                limit=limit + 1,
                tz=settings.timezone,
            ),
        )
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor(rows[-1][0])
        data = [
            {
                "time": time,
                "end": end_,
                "count": count,
                "good_count": good,
                "suspect_count": count - good,
                "sum": total,
                "mean": mean,
                "std": std,
                "min": low,
                "max": high,
                "first": first,
                "last": last,
                "coverage": coverage,
            }
            for time, end_, count, good, total, mean, std, low, high, first, last, coverage in rows
        ]
    document = {
        "series": series_ids,
        "metric": metric,
        "unit": unit,
        "bucket": bucket,
        "from": span.start,
        "to": span.end,
        "data": data,
        "next": next_link(request, next_cursor) if next_cursor else None,
        "meta": request.app.state.meta,
    }
    headers = {"link": f'<{document["next"]}>; rel="next"'} if next_cursor else None
    return read_response(request, document, max_age=MAX_AGE_DATA, headers=headers)


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
