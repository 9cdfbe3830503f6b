"""What an export's rows say of themselves: the series, site, device, metric, unit and
QC flag's name beside each value, values rounded to the metric's resolution, and the
tidy "wide" layout (issue 16).

A file must be readable alone: a readings CSV of ``time, series_id, value, quality``
had to be joined with /v1/series before anyone knew what a number was.  So each row
is shaped here, once, between the page that fetched it and the encoder, and every
format (CSV, Parquet, GeoJSON) encodes the very same shaped row: the same columns,
the same rounded numbers.  Rounding happens only here, on the way out; the stored
readings and rollups, and the JSON API, keep the value as received.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from api.export_datasets import (
    BUCKET_COLUMNS,
    BUCKET_VALUE_COLUMNS,
    LATEST_COLUMNS,
    bucket_row,
)
from api.export_formats import Column, Row
from api.params import Bucket
from core.qc import FLAG_NAMES
from core.units import rounder

Layout = Literal["long", "wide"]
Shaper = Callable[[Row], Row]


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """One series as an export describes it (`api.export_datasets.series_query` rows)."""

    id: int
    site_id: str | None
    device_id: str
    metric: str
    domain: str
    unit: str
    unit_symbol: str
    resolution: float | None
    value_type: str
    lon: float | None
    lat: float | None

    @property
    def position(self) -> tuple[float | None, float | None]:
        return (self.lon, self.lat)

    @property
    def wide_name(self) -> str:
        """Its column in the wide layout: the metric named with its unit (pm25_ug_m3)."""
        return f"{self.metric}_{unit_slug(self.unit_symbol)}"


def unit_slug(symbol: str) -> str:
    """A unit as a column-name suffix any tool takes: µg/m³ -> ug_m3, °C -> degc,
    %RH -> pct_rh, km/h -> km_h, vehicles -> vehicles."""
    text = symbol.replace("µ", "u").replace("μ", "u").replace("°", "deg").replace("%", "pct_")
    text = unicodedata.normalize("NFKD", text)  # ³ -> 3
    text = text.encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_") or "value"


def quality_name(flag: int | None) -> str | None:
    return None if flag is None else FLAG_NAMES.get(int(flag), str(flag))


def _round(value: Any, to: Callable[[float], float]) -> Any:
    return None if value is None else to(float(value))


# ------------------------------------------------------------------------ long


def raw_shaper(series: Mapping[int, SeriesInfo], geo: bool) -> Shaper:
    """(time, series_id, value, quality) -> `RAW_COLUMNS` (+ lon, lat for GeoJSON)."""

    def shape(row: Row) -> Row:
        time, series_id, value, flag = row
        info = series[series_id]
        shaped = (
            time,
            series_id,
            info.site_id,
            info.device_id,
            info.metric,
            info.unit,
            _round(value, rounder(info.resolution)),
            flag,
            quality_name(flag),
        )
        return (*shaped, *info.position) if geo else shaped

    return shape


_BUCKET_ROUNDED = tuple(c.name in BUCKET_VALUE_COLUMNS for c in BUCKET_COLUMNS[5:])
_SHARE = rounder(0.001)


def bucket_shaper(info: SeriesInfo, geo: bool) -> Shaper:
    """A bucket query row of ``info``'s series -> `BUCKET_COLUMNS` (+ lon, lat)."""
    to = rounder(info.resolution)

    def shape(row: Row) -> Row:
        _, *rest = bucket_row(info.id, row)
        values = [
            _round(v, to) if rounded else v
            for v, rounded in zip(rest[:-1], _BUCKET_ROUNDED, strict=False)
        ]
        shaped = (
            info.id,
            info.site_id,
            info.device_id,
            info.metric,
            info.unit,
            *values,
            _round(rest[-1], _SHARE),
        )
        return (*shaped, *info.position) if geo else shaped

    return shape


_LATEST = {c.name: i for i, c in enumerate(LATEST_COLUMNS)}


def latest_shaper(resolutions: Mapping[str, float | None]) -> Shaper:
    """A row of the latest values (the JSON route's columns, + lon, lat) with its value
    rounded to its metric's resolution and the flag's name after the flag."""
    metric, value, flag = _LATEST["metric"], _LATEST["value"], _LATEST["quality"]

    def shape(row: Row) -> Row:
        cells = list(row)
        cells[value] = _round(cells[value], rounder(resolutions.get(cells[metric])))
        cells.insert(flag + 1, quality_name(cells[flag]))
        return tuple(cells)

    return shape


def column_shaper(
    columns: Sequence[Column], resolutions: Mapping[str, float | None]
) -> Shaper | None:
    """Rounding by column (`Column.rounding`: a metric key or a fixed step); None when
    no column is rounded."""
    to: list[Callable[[float], float] | None] = []
    for column in columns:
        if isinstance(column.rounding, str):
            to.append(rounder(resolutions.get(column.rounding)))
        elif isinstance(column.rounding, float):
            to.append(rounder(column.rounding))
        else:
            to.append(None)
    if not any(to):
        return None
    count = len(to)

    def shape(row: Row) -> Row:
        cells = [v if r is None else _round(v, r) for v, r in zip(row[:count], to, strict=True)]
        return (*cells, *row[count:])

    return shape


# ------------------------------------------------------------------------ wide
#
# One row per device and time (or bucket), one column per metric named with its
# unit: the tidy layout spreadsheets and dataframes want.  The long rows of one
# device come in time order (raw: one step per device, in (time, series) order;
# buckets: the device's series merged by time, `api.export_fetch.MergedStep`), so
# the rows of one (device, time) are consecutive and are combined as they pass.


def wide_metrics(series: Sequence[SeriesInfo]) -> list[SeriesInfo]:
    """One series per metric (the first by id): whose unit names each wide column."""
    seen: dict[str, SeriesInfo] = {}
    for info in sorted(series, key=lambda s: (s.metric, s.id)):
        seen.setdefault(info.metric, info)
    return list(seen.values())


def wide_columns(bucket: Bucket, metrics: Sequence[SeriesInfo]) -> list[Column]:
    """``time``, (``end``,) ``site_id``, ``device_id``, then per metric its value (raw:
    with its QC flag's name beside it).  Of a bucket, the value is what the metric's
    kind makes of it: the mean of a gauge, the sum of a count, the last reading of a
    cumulative register."""
    columns = [Column("time", "timestamp", "the reading's time, or the bucket's start")]
    if bucket != "raw":
        columns.append(Column("end", "timestamp", "end of the bucket, exclusive"))
    columns += [
        Column("site_id", "text", "where: the site's id, as in /v1/sites"),
        Column("device_id", "text", "the sensor's id, as in /v1/devices"),
    ]
    for info in metrics:
        what = "reading" if bucket == "raw" else _BUCKET_VALUE[info.value_type]
        columns.append(
            Column(
                info.wide_name,
                "float",
                f"{info.metric}: {what}, {info.unit_symbol}",
                info.unit,
                info.metric,
            )
        )
        if bucket == "raw":
            columns.append(
                Column(f"{info.metric}_quality", "text", f"{info.metric}: {_QUALITY_WORDS}")
            )
    return columns


_QUALITY_WORDS = "the QARTOD flag's name (good, not_evaluated, suspect, fail, missing)"
_BUCKET_VALUE = {"gauge": "mean", "count": "sum", "cumulative": "last reading"}
#: position of the value in a long bucket row (`BUCKET_COLUMNS`) by the metric's kind
_BUCKET_AT = {
    kind: [c.name for c in BUCKET_COLUMNS].index(name)
    for kind, name in (("gauge", "mean"), ("count", "sum"), ("cumulative", "last"))
}


def wide_combiner(
    bucket: Bucket,
    metrics: Sequence[SeriesInfo],
    series: Mapping[int, SeriesInfo],
    geo: bool,
) -> Callable[[list[Row]], Row]:
    """The wide row of a group of long rows of one device and time (rows shaped by
    `raw_shaper` or `bucket_shaper` without position)."""
    slots = {info.metric: i for i, info in enumerate(metrics)}
    per_metric = 2 if bucket == "raw" else 1

    def combine(group: list[Row]) -> Row:
        first = series[group[0][1] if bucket == "raw" else group[0][0]]
        cells: list[Any] = [None] * (len(metrics) * per_metric)
        for row in group:
            if bucket == "raw":
                info = series[row[1]]
                at = slots[info.metric] * 2
                cells[at], cells[at + 1] = row[6], row[8]
            else:
                info = series[row[0]]
                cells[slots[info.metric]] = row[
                    _BUCKET_AT.get(info.value_type, _BUCKET_AT["gauge"])
                ]
        if bucket == "raw":
            head: tuple[Any, ...] = (group[0][0], first.site_id, first.device_id)
        else:
            head = (group[0][5], group[0][6], first.site_id, first.device_id)
        return (*head, *cells, *first.position) if geo else (*head, *cells)

    return combine


def wide_key(bucket: Bucket) -> Callable[[Row], tuple[Any, Any]]:
    """The (device, time) a long row belongs to."""
    if bucket == "raw":
        return lambda row: (row[3], row[0])
    return lambda row: (row[2], row[5])


#: long rows combined between two turns of the event loop
PIVOT_ROWS = 2_000


async def pivot(
    chunks: AsyncIterator[list[Row]],
    key: Callable[[Row], Any],
    combine: Callable[[list[Row]], Row],
) -> AsyncIterator[list[Row]]:
    """Chunks of long rows -> chunks of wide rows: consecutive rows with the same key
    become one; the last group of a chunk waits for the next (it may go on there)."""
    pending: list[Row] = []
    async for chunk in chunks:
        out: list[Row] = []
        for index, row in enumerate(chunk, start=1):
            if pending and key(row) != key(pending[0]):
                out.append(combine(pending))
                pending = []
            pending.append(row)
            if index % PIVOT_ROWS == 0:
                await asyncio.sleep(0)  # the event loop is shared: a turn per slice
        if out:
            yield out
    if pending:
        yield [combine(pending)]
