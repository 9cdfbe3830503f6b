"""Bulk exports: ``GET /v1/export/{dataset}?format=csv|parquet|geojson`` and filters.

Rows come from the export pool page by page (`api.export_fetch`: a connection is
held only while a page is queried, never while a client reads) and are encoded
chunk by chunk into the streamed response, so a year of readings never sits in
memory.  Everything that can make a request wrong (unknown dataset, format or
parameter, a range beyond ``api_max_range_days``, raw traffic) is checked before the
first byte goes out, so it is answered with problem+json; after that the status is
sent and an error can only cut the stream short.  An export takes a slot of the
export gate (`api.export_gate`: a cap per client and in all) from its first query
to the end of its response.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from psycopg_pool import AsyncConnectionPool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api import models
from api.export_datasets import (
    DATASETS,
    Dataset,
    Filters,
    bucket_query,
    dataset_query,
    latest_export_query,
    readings_columns,
    series_query,
)
from api.export_fetch import KeysetStep, MergedStep, RawReadingsStep, Step, fetch_chunks
from api.export_formats import (
    FORMATS,
    PARQUET,
    Column,
    Format,
    Row,
    csv_stream,
    geojson_stream,
    parquet_stream,
)
from api.export_gate import ExportGate, ExportSlot, client_of
from api.export_shape import (
    Layout,
    SeriesInfo,
    Shaper,
    bucket_shaper,
    column_shaper,
    latest_shaper,
    pivot,
    raw_shaper,
    wide_columns,
    wide_combiner,
    wide_key,
    wide_metrics,
)
from api.head import is_head
from api.licence import licence_meta
from api.params import (
    BUCKETS,
    DEFAULT_SPAN,
    Bucket,
    TimeParam,
    TimeRange,
    published_for_every_domain,
    time_range,
)
from api.problems import Problem, bad_parameter
from api.queries import AGGREGATE_ONLY_DOMAINS
from api.responses import MAX_AGE_CATALOGUE, data_response, public_base_url
from core.settings import Settings

router = APIRouter(tags=["export"])


def _list(values: list[str] | None) -> tuple[str, ...]:
    """Repeated or comma-separated parameter values."""
    return tuple(v.strip() for value in values or () for v in value.split(",") if v.strip())


def _series_ids(values: list[str] | None) -> tuple[int, ...]:
    ids = []
    for text in _list(values):
        try:
            ids.append(int(text))
        except ValueError:
            raise bad_parameter(
                "series", f"series={text!r} is not a series id (an integer)"
            ) from None
    return tuple(ids)


Encoder = Callable[
    [list[Column], AsyncIterator[list[Row]], dict[str, str]], AsyncGenerator[bytes, None]
]


def _encoder(fmt: Format) -> Encoder:
    if fmt == "csv":
        return lambda columns, chunks, _metadata: csv_stream(columns, chunks)
    if fmt == "parquet":
        return parquet_stream
    return geojson_stream


def _filename(settings: Settings, key: str, fmt: Format, span: TimeRange | None) -> str:
    city = "".join(c for c in settings.city.lower() if c.isascii() and c.isalnum()) or "city"
    name = f"smartby-{city}-{key}"
    if span is not None:
        name += f"-{span.start:%Y%m%d}-{span.end:%Y%m%d}"
    return f"{name}.{FORMATS[fmt][1]}"


@dataclass(frozen=True, slots=True)
class SeriesSelection:
    series: dict[int, SeriesInfo]  # by id, in id order
    #: metrics left out of a raw or 1-minute export by the privacy rule (traffic)
    excluded: tuple[str, ...] = ()


def _named(info: SeriesInfo, filters: Filters) -> bool:
    """Whether the request named this series itself (by id, device or metric), rather
    than getting it by default or with a whole site."""
    return (
        info.id in filters.series
        or info.device_id in filters.devices
        or info.metric in filters.metrics
    )


async def _readings_selection(
    pool: AsyncConnectionPool[Any], filters: Filters, bucket: Bucket
) -> SeriesSelection:
    """The series a readings export covers.  Raw and 1-minute exports leave traffic out
    (published only in aggregates of at least 15 minutes, the privacy rule): silently
    when the request did not name it, so that the default export, the catalogue's
    download link, works; with a 400 when it did (the request asks for what cannot be
    given)."""
    query, params = series_query(filters)
    async with pool.connection() as conn:
        cursor = await conn.execute(query, params)
        rows = await cursor.fetchall()
    if not rows:
        raise Problem(
            404,
            "Not found",
            "no series matches the selection (series, site, device, metric)",
            resource="series",
        )
    series = [SeriesInfo(*row) for row in rows]
    excluded: set[str] = set()
    if not published_for_every_domain(bucket):
        private = [s for s in series if s.domain in AGGREGATE_ONLY_DOMAINS]
        named = sorted({s.metric for s in private if _named(s, filters)})
        if named or len(private) == len(series):
            metrics = named or sorted({s.metric for s in private})
            raise bad_parameter(
                "bucket",
                f"{', '.join(metrics)} are published only in aggregates of at least 15 "
                f"minutes (privacy): use bucket=1h or bucket=1d, not bucket={bucket}",
            )
        excluded = {s.metric for s in private}
        series = [s for s in series if s.domain not in AGGREGATE_ONLY_DOMAINS]
    return SeriesSelection({s.id: s for s in series}, tuple(sorted(excluded)))


def _readings_plan(
    selection: SeriesSelection, bucket: Bucket, span: TimeRange, geo: bool, tz: str, wide: bool
) -> tuple[
    list[Column], list[Step], Callable[[AsyncIterator[list[Row]]], AsyncIterator[list[Row]]] | None
]:
    """The columns, the steps and (wide) the pivot of a readings export."""
    series = selection.series
    if not wide:
        if bucket == "raw":
            steps: list[Step] = [
                RawReadingsStep(list(series), span.start, span.end, raw_shaper(series, geo))
            ]
        else:
            steps = [
                KeysetStep(
                    functools.partial(_bucket_page, info.id, bucket, span, tz),
                    _first,
                    bucket_shaper(info, geo),
                )
                for info in series.values()
            ]
        return list(readings_columns(bucket)), steps, None
    by_device: dict[str, list[SeriesInfo]] = {}
    for info in series.values():
        by_device.setdefault(info.device_id, []).append(info)
    steps = []
    for device in sorted(by_device):
        members = by_device[device]
        if bucket == "raw":
            ids = [info.id for info in members]
            steps.append(RawReadingsStep(ids, span.start, span.end, raw_shaper(series, False)))
        else:
            steps.append(
                MergedStep(
                    [
                        KeysetStep(
                            functools.partial(_bucket_page, info.id, bucket, span, tz),
                            _first,
                            bucket_shaper(info, False),
                        )
                        for info in members
                    ],
                    _bucket_time,
                )
            )
    metrics = wide_metrics(list(series.values()))
    combine = wide_combiner(bucket, metrics, series, geo)
    key = wide_key(bucket)

    def pivoted(chunks: AsyncIterator[list[Row]]) -> AsyncIterator[list[Row]]:
        return pivot(chunks, key, combine)

    return wide_columns(bucket, metrics), steps, pivoted


def _first(row: Row) -> Any:
    return row[0]


def _bucket_time(row: Row) -> Any:
    return row[5]  # a long bucket row's time (`BUCKET_COLUMNS`)


def _bucket_page(
    series_id: int, bucket: Bucket, span: TimeRange, tz: str, after: Any, limit: int
) -> tuple[Any, Any]:
    return bucket_query(series_id, bucket, span.start, span.end, tz, after=after, limit=limit)


def _dataset_step(
    dataset: Dataset, filters: Filters, geo: bool, shape: Shaper | None
) -> KeysetStep:
    """A table's rows, paged on its key (the ``order`` columns), rounded by column."""
    positions = dataset.key_positions

    def page(after: Any, limit: int) -> tuple[Any, Any]:
        return dataset_query(dataset, filters, geo=geo, after=after, limit=limit)

    def key(row: Row) -> tuple[Any, ...]:
        return tuple(row[i] for i in positions)

    return KeysetStep(page, key, shape)


def _latest_step(filters: Filters, geo: bool, shape: Shaper) -> KeysetStep:
    """The latest values, paged by series id (the first column)."""

    def page(after: Any, limit: int) -> tuple[Any, Any]:
        return latest_export_query(filters, geo=geo, after=after, limit=limit)

    return KeysetStep(page, _first, shape)


class ExportResponse(StreamingResponse):
    """The streamed export, holding its export slot until the response has ended,
    however it ends (finished, the client gone, or cut off by the edge)."""

    def __init__(self, body: AsyncIterator[bytes], slot: ExportSlot, **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self.stream = body
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
            aclose = getattr(self.stream, "aclose", None)
            if aclose is not None:
                await aclose()


def _check_filters(dataset: Dataset, **given: list[str] | None) -> None:
    """Refuse a filter the dataset does not have, rather than ignore it."""
    applies = {
        "site": dataset.site_column is not None,
        "device": dataset.device_column is not None,
        "metric": dataset.key in ("latest", "readings"),
        "series": dataset.key in ("latest", "readings"),
    }
    for parameter, values in given.items():
        if values and not (dataset.key == "readings" or applies[parameter]):
            raise bad_parameter(parameter, f"{dataset.key} cannot be filtered by {parameter}")


ListParam = Annotated[
    list[str] | None, Query(description="Repeat it or separate values by commas.")
]


@router.get(
    "/export",
    response_model=models.ExportIndex,
    summary="The datasets that can be exported, their columns and formats",
)
async def export_index(request: Request) -> Response:
    """Every dataset that can be exported: whether it takes a time range, its
    formats and download links, and its columns with their types, units and
    descriptions (readings: for each bucket, long layout)."""
    base = public_base_url(request)
    datasets = []
    for key, dataset in DATASETS.items():
        formats = dataset.formats
        columns = (
            {bucket: readings_columns(bucket) for bucket in BUCKETS}
            if key == "readings"
            else {"": dataset.columns}
        )
        datasets.append(
            {
                "id": key,
                "time_series": dataset.time_column is not None,
                "formats": formats,
                "links": {f: f"{base}/v1/export/{key}?format={f}" for f in formats},
                "columns": {
                    name: [{"description": "", **c.described()} for c in cols]
                    for name, cols in columns.items()
                },
            }
        )
    return data_response(request, datasets, max_age=MAX_AGE_CATALOGUE)


@router.get(
    "/export/{dataset}",
    summary="Bulk export of a dataset as CSV, Parquet or GeoJSON, streamed",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The rows, streamed, with the columns of the matching JSON route "
            "(see /v1/export). Licence in the Link and X-Attribution headers and, for "
            "Parquet and GeoJSON, inside the file.",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                PARQUET: {"schema": {"type": "string", "contentMediaType": PARQUET}},
                "application/geo+json": {
                    "schema": models.ExportFeatureCollection.model_json_schema()
                },
            },
            "headers": {
                "Content-Disposition": {
                    "description": "attachment, with a file name saying what is in it",
                    "schema": {"type": "string"},
                }
            },
        }
    },
)
async def export(
    request: Request,
    dataset: Annotated[str, Path(description=f"One of: {', '.join(DATASETS)}.", examples=["aqi"])],
    format: Annotated[Format, Query(description="The file format.")] = "csv",
    start: Annotated[
        TimeParam | None,
        Query(
            alias="from",
            description="Start, inclusive; time series only: an RFC 3339 date-time with "
            "offset, a date (its local midnight), or a span back from `to` (-7d, P7D). "
            "Default: as the JSON route's (readings: `to` minus 1 day for raw and 1m, 30 "
            "days for 1h, 365 for 1d; hourly indicators 7 days; daily indicators 90 days).",
            examples=["2026-01-05", "2026-01-05T00:00:00+01:00", "-7d"],
        ),
    ] = None,
    end: Annotated[
        TimeParam | None,
        Query(
            alias="to",
            description="End, exclusive: an RFC 3339 date-time with offset, a date (its "
            "local midnight), a span back from now, or `now`. Default: now.",
            examples=["2026-01-12", "2026-01-12T00:00:00+01:00"],
        ),
    ] = None,
    site: ListParam = None,
    device: ListParam = None,
    metric: ListParam = None,
    series: ListParam = None,
    bucket: Annotated[
        Bucket, Query(description="readings only: raw, 1m, 1h or 1d (traffic: 1h or 1d).")
    ] = "raw",
    layout: Annotated[
        Layout,
        Query(
            description="readings only. long: a row per reading (or bucket) of one series, "
            "with its site, device, metric, unit and QC flag. wide: a row per device and "
            "time, a column per metric named with its unit (pm25_ug_m3); of a bucket, the "
            "mean of a gauge, the sum of a count, the last reading of a register."
        ),
    ] = "long",
) -> Response:
    """A dataset as a file, streamed as it is read: CSV (RFC 4180), Parquet (zstd,
    a row group per 10 000 rows) or GeoJSON (RFC 7946; datasets with a position).

    Each file describes itself: readings rows carry their series, site, device,
    metric, unit and QC flag (number and name), values rounded to the metric's
    resolution; Parquet fields carry their unit and description in their metadata,
    GeoJSON lists its columns and units in a `columns` member, and both carry the
    licence. `layout=wide` (readings) gives a row per device and time and a column
    per metric named with its unit. Traffic is published only in aggregates of at
    least 15 minutes: a raw or 1-minute readings export leaves it out unless it is
    asked for by name (then 400), and says so in `X-Export-Note`. HEAD answers with
    the headers alone."""
    settings: Settings = request.app.state.settings
    pool: AsyncConnectionPool[Any] = request.app.state.export_pool
    gate: ExportGate = request.app.state.export_gate
    chosen = DATASETS.get(dataset)
    if chosen is None:
        raise Problem(
            404,
            "Not found",
            f"no dataset {dataset!r}; the datasets are: {', '.join(DATASETS)}",
            resource="dataset",
        )
    geo = format == "geojson"
    if geo and chosen.geometry is None:
        raise bad_parameter(
            "format", f"{dataset} has no position, so no GeoJSON: use format=csv or parquet"
        )
    if bucket != "raw" and chosen.key != "readings":
        raise bad_parameter("bucket", f"bucket applies to the readings export, not {dataset}")
    _check_filters(chosen, site=site, device=device, metric=metric, series=series)
    filters = Filters(
        sites=_list(site),
        devices=_list(device),
        metrics=_list(metric),
        series=_series_ids(series),
        bucket=bucket,
    )
    span: TimeRange | None = None
    if chosen.time_column is not None:
        default = DEFAULT_SPAN[filters.bucket] if chosen.key == "readings" else chosen.default_span
        span = time_range(
            start,
            end,
            default_span=default,
            max_days=settings.api_max_range_days,
            tz=settings.timezone,
        )
        filters = dataclasses.replace(filters, start=span.start, end=span.end)
    elif start is not None or end is not None:
        raise bad_parameter(
            "from" if start is not None else "to",
            f"{dataset} is not a time series: it takes no 'from' or 'to'",
        )

    if layout == "wide" and chosen.key != "readings":
        raise bad_parameter("layout", f"layout=wide applies to the readings export, not {dataset}")

    head = is_head(request)
    # HEAD: the headers a GET would get, and no slot or rows (api.head); the plan is
    # still made, so that a HEAD fails where the GET would
    slot = None if head else gate.admit(client_of(request))
    try:
        plan = await _plan(pool, chosen, filters, span, geo, settings.timezone, layout == "wide")
    except BaseException:
        if slot is not None:
            slot.release()
        raise
    encode = _encoder(format)
    metadata = {key: str(value) for key, value in licence_meta(settings.city).items()}
    if plan.note:
        metadata["note"] = plan.note

    encoding: asyncio.Semaphore = request.app.state.export_encoding

    async def body() -> AsyncIterator[bytes]:
        """The file, piece by piece.  Exports are bulk and the loop is shared: only
        `EXPORT_ENCODERS` exports fetch and encode at a time, and each lets the loop
        run other requests between its pieces (`api.export_formats.slices`)."""
        chunks = fetch_chunks(pool, plan.steps)
        rows = chunks if plan.pivot is None else plan.pivot(chunks)
        pieces = encode(plan.columns, rows, metadata)
        async with contextlib.aclosing(chunks), contextlib.aclosing(pieces):
            while True:
                async with encoding:
                    piece = await anext(pieces, None)
                if piece is None:
                    return
                yield piece
                await asyncio.sleep(0)

    media_type, _ = FORMATS[format]
    suffix = f"-{filters.bucket}" if chosen.key == "readings" else ""
    suffix += "-wide" if layout == "wide" else ""
    filename = _filename(settings, chosen.key + suffix, format, span)
    # the licence headers (Link, X-License, X-Attribution) come with every /v1 response
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if plan.note:
        headers["X-Export-Note"] = plan.note
    if slot is None:
        return StreamingResponse(iter(()), media_type=media_type, headers=headers)
    return ExportResponse(body(), slot, media_type=media_type, headers=headers)


@dataclass(frozen=True, slots=True)
class Plan:
    """What an export holds and how its rows come: the columns, the steps fetching
    them (shaped: self-described and rounded, `api.export_shape`), the wide pivot, and
    a note on what the privacy rule left out."""

    columns: list[Column]
    steps: list[Step]
    pivot: Callable[[AsyncIterator[list[Row]]], AsyncIterator[list[Row]]] | None = None
    note: str = ""


async def _resolutions(pool: AsyncConnectionPool[Any]) -> dict[str, float | None]:
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT key, resolution FROM metrics")
        return {key: resolution for key, resolution in await cursor.fetchall()}


async def _plan(
    pool: AsyncConnectionPool[Any],
    dataset: Dataset,
    filters: Filters,
    span: TimeRange | None,
    geo: bool,
    tz: str,
    wide: bool,
) -> Plan:
    """The export's columns and the steps that fetch its rows."""
    if dataset.key == "readings":
        assert span is not None
        selection = await _readings_selection(pool, filters, filters.bucket)
        columns, steps, pivoted = _readings_plan(selection, filters.bucket, span, geo, tz, wide)
        note = ""
        if selection.excluded:
            note = (
                f"left out: {', '.join(selection.excluded)} (traffic), published only in "
                "aggregates of at least 15 minutes: export them with bucket=1h or bucket=1d"
            )
        return Plan(columns, steps, pivoted, note)
    resolutions = await _resolutions(pool)
    if dataset.key == "latest":
        return Plan(list(dataset.columns), [_latest_step(filters, geo, latest_shaper(resolutions))])
    shape = column_shaper(dataset.columns, resolutions)
    return Plan(list(dataset.columns), [_dataset_step(dataset, filters, geo, shape)])
