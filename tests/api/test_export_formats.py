"""The streaming encoders and query builders of bulk exports, without a database."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api import queries
from api.export_datasets import (
    DATASETS,
    UNLIMITED,
    Filters,
    bucket_query,
    bucket_row,
    dataset_query,
    latest_export_query,
    raw_readings_query,
    readings_columns,
    series_query,
)
from api.export_formats import Column, csv_stream, geojson_stream, parquet_stream
from api.export_shape import SeriesInfo, bucket_shaper
from core.indicators import AQI_LEVEL_NAMES

COLUMNS = (
    Column("site_id", "text"),
    Column("time", "timestamp"),
    Column("day", "date"),
    Column("value", "float"),
    Column("count", "int"),
    Column("properties", "json"),
)
T0 = datetime(2024, 3, 31, 0, 30, tzinfo=UTC)
OSLO = timezone(timedelta(hours=2))


def rows(n: int, start: int = 0) -> list[tuple[Any, ...]]:
    return [
        (
            f"site-{i % 3}",
            (T0 + timedelta(minutes=i)).astimezone(OSLO),  # any offset: exported as UTC
            date(2024, 3, 31),
            None if i % 7 == 0 else i / 3,
            i,
            {"road": "E6", "lanes": i % 2} if i % 2 else None,
        )
        for i in range(start, start + n)
    ]


async def chunked(chunks: list[list[tuple[Any, ...]]]) -> AsyncIterator[list[tuple[Any, ...]]]:
    for chunk in chunks:
        yield chunk


def collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    async def run() -> list[bytes]:
        return [piece async for piece in stream]

    return asyncio.run(run())


def test_csv_reads_back_equal_with_one_piece_per_chunk() -> None:
    chunks = [rows(5), rows(5, 5), [], rows(3, 10)]
    pieces = collect(csv_stream(COLUMNS, chunked(chunks)))
    assert len(pieces) == 1 + 3  # header, then one piece per non-empty chunk
    table = list(csv.DictReader(io.StringIO(b"".join(pieces).decode())))
    expected = [r for c in chunks for r in c]
    assert len(table) == len(expected)
    for line, row in zip(table, expected, strict=True):
        assert line["site_id"] == row[0]
        assert datetime.fromisoformat(line["time"]) == row[1]
        assert line["time"].endswith("Z")
        assert date.fromisoformat(line["day"]) == row[2]
        assert (float(line["value"]) if line["value"] else None) == row[3]
        assert int(line["count"]) == row[4]
        assert (json.loads(line["properties"]) if line["properties"] else None) == row[5]


def test_csv_of_no_rows_is_the_header() -> None:
    pieces = collect(csv_stream(COLUMNS, chunked([])))
    assert b"".join(pieces) == b"site_id,time,day,value,count,properties\r\n"


def test_parquet_streams_one_row_group_per_chunk_and_reads_back_equal() -> None:
    chunks = [rows(100), rows(100, 100), rows(7, 200)]
    pieces = collect(parquet_stream(COLUMNS, chunked(chunks), {"license": "NLOD"}))
    # bytes leave after every row group, not only at the end
    assert len(pieces) == 4
    assert all(pieces[:3])
    data = b"".join(pieces)
    parquet = pq.ParquetFile(pa.BufferReader(data))
    assert parquet.num_row_groups == 3
    assert parquet.schema_arrow.metadata[b"license"] == b"NLOD"
    table = parquet.read().to_pylist()
    expected = [r for c in chunks for r in c]
    assert [r["time"] for r in table] == [r[1] for r in expected]
    assert [r["value"] for r in table] == [r[3] for r in expected]
    assert [r["day"] for r in table] == [r[2] for r in expected]
    assert [json.loads(r["properties"]) if r["properties"] else None for r in table] == [
        r[5] for r in expected
    ]


def test_parquet_of_no_rows_is_a_valid_empty_file() -> None:
    data = b"".join(collect(parquet_stream(COLUMNS, chunked([]))))
    table = pq.read_table(pa.BufferReader(data))
    assert table.num_rows == 0
    assert table.column_names == [c.name for c in COLUMNS]


def test_geojson_is_a_feature_collection_with_points_and_licence_members() -> None:
    with_positions = [(*r, 17.43, 68.44) for r in rows(4)] + [(*rows(1, 4)[0], None, None)]
    pieces = collect(
        geojson_stream(COLUMNS, chunked([with_positions[:2], with_positions[2:]]), {"license": "L"})
    )
    document = json.loads(b"".join(pieces))
    assert document["type"] == "FeatureCollection"
    assert document["license"] == "L"
    features = document["features"]
    assert len(features) == 5
    assert features[0]["geometry"] == {"type": "Point", "coordinates": [17.43, 68.44]}
    assert features[4]["geometry"] is None
    assert features[1]["properties"]["count"] == 1
    assert datetime.fromisoformat(features[1]["properties"]["time"]) == T0 + timedelta(minutes=1)
    assert features[1]["properties"]["day"] == "2024-03-31"


def test_geojson_of_no_rows_is_an_empty_collection() -> None:
    document = json.loads(b"".join(collect(geojson_stream(COLUMNS, chunked([])))))
    assert document["type"] == "FeatureCollection"
    assert document["features"] == []
    # the columns are described even so: the file alone says what it would hold
    assert [c["name"] for c in document["columns"]] == [c.name for c in COLUMNS]


def test_dataset_query_filters_by_range_and_site_as_parameters() -> None:
    start, end = T0, T0 + timedelta(days=1)
    query, params = dataset_query(
        DATASETS["aqi"], Filters(start=start, end=end, sites=("narvik-sentrum",))
    )
    text = query.as_string()
    assert "FROM aqi_hourly t WHERE t.hour >= %s AND t.hour < %s AND t.site_id = ANY(%s)" in text
    assert text.endswith("ORDER BY t.site_id, t.hour")
    # the level names come first: the label column's placeholder is in the SELECT
    assert params == [list(AQI_LEVEL_NAMES), start, end, ["narvik-sentrum"]]
    assert "lon" not in text


def test_dataset_query_for_geojson_adds_the_site_position() -> None:
    query, params = dataset_query(DATASETS["traffic-daily"], Filters(devices=("tc-1",)), geo=True)
    text = query.as_string()
    assert ", st.lon, st.lat FROM traffic_daily t LEFT JOIN sites st ON st.id = t.site_id" in text
    assert params == [["tc-1"]]
    with pytest.raises(ValueError, match="no geometry"):
        dataset_query(DATASETS["metrics"], Filters(), geo=True)


def test_series_query_combines_selections() -> None:
    query, params = series_query(Filters(sites=("a",), metrics=("pm25", "no2"), series=(3,)))
    text = query.as_string()
    assert "WHERE s.id = ANY(%s) AND d.site_id = ANY(%s) AND s.metric = ANY(%s)" in text
    assert params == [[3], ["a"], ["pm25", "no2"]]


def test_readings_queries_are_the_json_routes_without_a_page_limit() -> None:
    start, end = T0, T0 + timedelta(days=30)
    raw, raw_params = raw_readings_query([1, 2], start, end)
    assert "FROM readings WHERE series_id = ANY(%(series)s)" in raw.as_string()
    assert raw_params["series"] == [1, 2]
    assert raw_params["limit"] == UNLIMITED
    hourly, hourly_params = bucket_query(7, "1h", start, end, "Europe/Oslo")
    assert "FROM rollups" in hourly.as_string()
    assert hourly_params["series"] == [7]
    assert hourly_params["resolution"] == "1h"
    names = [c.name for c in readings_columns("1h")]
    assert names[:8] == [
        "series_id",
        "site_id",
        "device_id",
        "metric",
        "unit",
        "time",
        "end",
        "count",
    ]
    # a bucket row gains its series and the number of suspect readings ...
    row = (T0, end, 10, 7, 55.04, 5.504, 1.0, 4.0, 7.0, 5.0, 6.0, 1.0)
    shaped = bucket_row(7, row)
    assert shaped[:6] == (7, T0, end, 10, 7, 3)
    # ... and, on the way out, what it is: site, device, metric, unit; values rounded
    info = SeriesInfo(7, "s", "d", "pm25", "air_quality", "ug/m3", "µg/m³", 0.1, "gauge", 1, 2)
    described = bucket_shaper(info, geo=False)(row)
    assert len(described) == len(names)
    assert dict(zip(names, described, strict=True)) | {"time": T0} == {
        "series_id": 7, "site_id": "s", "device_id": "d", "metric": "pm25", "unit": "ug/m3",
        "time": T0, "end": end, "count": 10, "good_count": 7, "suspect_count": 3,
        "sum": 55.0, "mean": 5.5, "std": 1.0, "min": 4.0, "max": 7.0, "first": 5.0,
        "last": 6.0, "coverage": 1.0,
    }  # fmt: skip
    assert bucket_shaper(info, geo=True)(row)[-2:] == (1, 2)


def test_latest_export_wraps_the_latest_route_query() -> None:
    query, params = latest_export_query(Filters(sites=("a", "b"), metrics=("no2",)), geo=True)
    text = query.as_string()
    assert text.startswith("SELECT q.*, st.lon, st.lat FROM (")
    assert "q.site_id = ANY(%(export_sites)s) AND q.metric = ANY(%(export_metrics)s)" in text
    assert params["export_sites"] == ["a", "b"]


def test_indicator_exports_have_the_json_routes_columns() -> None:
    tables = {
        "aqi": queries.AQI_HOURLY,
        "energy-hourly": queries.ENERGY_HOURLY,
        "energy-daily": queries.ENERGY_DAILY,
        "traffic-hourly": queries.TRAFFIC_HOURLY,
        "traffic-daily": queries.TRAFFIC_DAILY,
    }
    for key, table in tables.items():
        names = [c.name for c in DATASETS[key].columns if c.name != "label"]  # aqi's computed
        # the AQI's means are named with their unit in the files (pm25 -> pm25_ug_m3)
        assert [n.removesuffix("_ug_m3") for n in names] == list(table.columns), key
        assert DATASETS[key].default_span == table.default_span
