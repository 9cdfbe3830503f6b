"""Bulk exports and the DCAT catalogue through the app, on the simulated Narvik data.

Each round-trip test fetches a dataset from its JSON route and exports the same
selection as CSV and as Parquet; read back, the exports hold the same rows and
values as the JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

import api.export_fetch
from api.app import create_app
from api.export_datasets import AQI_POLLUTANTS, DATASETS, readings_columns
from api.export_formats import Column
from api.licence import NLOD_URL
from core.qc import FLAG_NAMES
from core.units import rounder
from tests.fixtures.services import Services
from tests.fixtures.simulated import SimulatedData


@pytest.fixture(scope="module")
def client(services: Services, simulated: SimulatedData) -> Iterator[TestClient]:
    settings = services.settings(database_url=simulated.url, api_rate_limit="100000/minute")
    with TestClient(create_app(settings, database_url=simulated.url)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def span(simulated: SimulatedData) -> tuple[str, str]:
    """The simulated history's last two days, as query parameter values."""
    end = datetime.fromtimestamp(simulated.end, UTC)
    return iso(end - timedelta(days=2)), iso(end)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def one(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


# ------------------------------------------------------------------ reading back


def typed(text: str, column: Column) -> Any:
    """A CSV cell read back: empty is NULL, the rest as `from_json` reads JSON values."""
    if text == "":
        return None
    if column.kind == "int":
        return int(text)
    if column.kind == "bool":
        return text == "true"
    if column.kind in ("json", "list"):
        return json.loads(text)
    return from_json(text, column)


def read_csv(body: bytes, columns: tuple[Column, ...]) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(body.decode()))
    header = next(reader)
    assert header == [c.name for c in columns]
    return [{c.name: typed(v, c) for c, v in zip(columns, line, strict=True)} for line in reader]


def read_parquet(body: bytes, columns: tuple[Column, ...]) -> list[dict[str, Any]]:
    table = pq.read_table(pa.BufferReader(body))
    assert table.column_names == [c.name for c in columns]
    rows = table.to_pylist()
    for row in rows:
        for c in columns:
            if c.kind == "json" and row[c.name] is not None:
                row[c.name] = json.loads(row[c.name])
    return rows


def from_json(value: Any, column: Column) -> Any:
    if value is None:
        return None
    if column.kind == "timestamp":
        return datetime.fromisoformat(value)
    if column.kind == "date":
        return date.fromisoformat(value)
    if column.kind == "float":
        return float(value)
    return value


def json_rows(document: list[dict[str, Any]], columns: tuple[Column, ...]) -> list[dict[str, Any]]:
    return [{c.name: from_json(row.get(c.name), c) for c in columns} for row in document]


# ------------------------------------------------- what the JSON says the file holds
#
# The files describe themselves (the series' site, device, metric and unit, the QC
# flag's name) and round values to the metric's resolution; the JSON routes serve
# values as stored.  These build, from a JSON document, the rows a file must hold.


def resolutions(client: TestClient) -> dict[str, float | None]:
    return {m["key"]: m["resolution"] for m in client.get("/v1/metrics").json()["data"]}


def rounded(value: Any, resolution: float | None) -> Any:
    return None if value is None else rounder(resolution)(value)


def described_series(client: TestClient, series_id: int) -> dict[str, Any]:
    """What a readings file says of a series, from /v1/series."""
    found = [s for s in client.get("/v1/series").json()["data"] if s["id"] == series_id]
    assert found, series_id
    s = found[0]
    return {
        "series_id": series_id,
        "site_id": s["site_id"],
        "device_id": s["device_id"],
        "metric": s["metric"],
        "unit": s["unit"],
    }


VALUES = ("sum", "mean", "std", "min", "max", "first", "last", "value")


def readings_expected(
    client: TestClient, series_id: int, data: list[dict[str, Any]], columns: tuple[Column, ...]
) -> list[dict[str, Any]]:
    about = described_series(client, series_id)
    resolution = resolutions(client)[about["metric"]]
    rows = []
    for point in data:
        row = {**about, **point}
        for name in VALUES:
            if name in row:
                row[name] = rounded(row[name], resolution)
        if "coverage" in row:
            row["coverage"] = rounded(row["coverage"], 0.001)
        if "quality" in row:
            row["quality_name"] = FLAG_NAMES[row["quality"]]
        rows.append(row)
    return json_rows(rows, columns)


def dataset_expected(
    client: TestClient, dataset: str, document: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A JSON route's rows as the dataset's export holds them: AQI means named with
    their unit, latest values with their flag's name, numbers rounded by column."""
    steps = resolutions(client)
    rows = []
    for source in document:
        row = dict(source)
        if dataset == "aqi":
            for key in AQI_POLLUTANTS:
                row[f"{key}_ug_m3"] = row.pop(key)
        if dataset == "latest":
            row["value"] = rounded(row["value"], steps[row["metric"]])
            quality = row["quality"]
            row["quality_name"] = None if quality is None else FLAG_NAMES[quality]
        for column in DATASETS[dataset].columns:
            if isinstance(column.rounding, str):
                row[column.name] = rounded(row[column.name], steps[column.rounding])
            elif isinstance(column.rounding, float):
                row[column.name] = rounded(row[column.name], column.rounding)
        rows.append(row)
    return json_rows(rows, DATASETS[dataset].columns)


def exported(client: TestClient, path: str, fmt: str, columns: tuple[Column, ...]) -> list[Any]:
    separator = "&" if "?" in path else "?"
    response = client.get(f"{path}{separator}format={fmt}")
    assert response.status_code == 200, response.text
    assert 'rel="license"' in response.headers["link"]
    assert NLOD_URL in response.headers["link"]
    assert response.headers["x-attribution"].endswith("distributed by Narvik")
    assert response.headers["content-disposition"].startswith('attachment; filename="smartby-')
    if fmt == "csv":
        assert response.headers["content-type"].startswith("text/csv")
        return read_csv(response.content, columns)
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    metadata = pq.ParquetFile(pa.BufferReader(response.content)).schema_arrow.metadata
    assert metadata[b"license_url"] == NLOD_URL.encode()
    return read_parquet(response.content, columns)


# ------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_hourly_series_export_reads_back_equal_to_the_json(
    client: TestClient, simulated: SimulatedData, span: tuple[str, str], fmt: str
) -> None:
    series_id = one(simulated.url, "SELECT id FROM series WHERE metric = 'no2' ORDER BY id LIMIT 1")
    start, end = span
    page = client.get(
        f"/v1/series/{series_id}/data",
        params={"bucket": "1h", "from": start, "to": end, "limit": 10000},
    ).json()
    assert page["next"] is None
    columns = readings_columns("1h")
    rows = exported(
        client,
        f"/v1/export/readings?series={series_id}&bucket=1h&from={start}&to={end}",
        fmt,
        columns,
    )
    assert len(rows) > 24
    assert {r["series_id"] for r in rows} == {series_id}
    assert rows == readings_expected(client, series_id, page["data"], columns)


#: a PM2.5 series of a station reporting every minute (the readings' count decides, not
#: the order ingest happened to create the series in)
BUSIEST_PM25 = (
    "SELECT s.id FROM series s WHERE s.metric = 'pm25'"
    " ORDER BY (SELECT count(*) FROM readings r WHERE r.series_id = s.id) DESC, s.id LIMIT 1"
)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_raw_readings_export_reads_back_equal_to_the_json(
    client: TestClient, simulated: SimulatedData, fmt: str
) -> None:
    series_id = one(simulated.url, BUSIEST_PM25)
    end = datetime.fromtimestamp(simulated.end, UTC)
    start, stop = iso(end - timedelta(hours=6)), iso(end)
    page = client.get(
        f"/v1/series/{series_id}/data",
        params={"bucket": "raw", "from": start, "to": stop, "limit": 10000},
    ).json()
    columns = readings_columns("raw")
    rows = exported(
        client, f"/v1/export/readings?series={series_id}&from={start}&to={stop}", fmt, columns
    )
    assert len(rows) > 100
    assert rows == readings_expected(client, series_id, page["data"], columns)


ROUND_TRIPS = [
    # dataset, its JSON route, where the rows are in the JSON document
    ("aqi", "/v1/aqi/narvik-sentrum", "data", "site=narvik-sentrum"),
    ("energy-hourly", "/v1/energy/hourly", "data", ""),
    ("energy-daily", "/v1/energy/daily", "data", ""),
    ("traffic-hourly", "/v1/traffic/hourly", "data", ""),
    ("traffic-daily", "/v1/traffic/daily", "data", ""),
    ("traffic-adt", "/v1/traffic/adt", "data", ""),
    ("latest", "/v1/latest", "data", ""),
    ("devices", "/v1/devices", "data", ""),
    ("metrics", "/v1/metrics", "data", ""),
]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize(("dataset", "route", "member", "filters"), ROUND_TRIPS)
def test_export_reads_back_equal_to_the_json_route(
    client: TestClient,
    span: tuple[str, str],
    dataset: str,
    route: str,
    member: str,
    filters: str,
    fmt: str,
) -> None:
    columns = DATASETS[dataset].columns
    params: dict[str, Any] = {}
    query = filters
    if DATASETS[dataset].time_column is not None:
        params = {"from": span[0], "to": span[1], "limit": 10000}
        query = "&".join(q for q in (filters, f"from={span[0]}&to={span[1]}") if q)
    response = client.get(route, params=params)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document.get("next") is None
    expected = dataset_expected(client, dataset, document[member])
    assert expected, f"{route} is empty: nothing to compare"
    rows = exported(client, f"/v1/export/{dataset}?{query}", fmt, columns)
    key = [c.name for c in columns[:3]]
    assert sorted(rows, key=lambda r: [str(r[k]) for k in key]) == sorted(
        expected, key=lambda r: [str(r[k]) for k in key]
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_sites_export_reads_back_equal_to_the_geojson_route(client: TestClient, fmt: str) -> None:
    collection = client.get("/v1/sites").json()
    expected = [
        {
            "id": f["id"],
            "name": f["properties"]["name"],
            "kind": f["properties"]["kind"],
            "municipality": f["properties"]["municipality"],
            "lon": f["geometry"]["coordinates"][0],
            "lat": f["geometry"]["coordinates"][1],
            "devices": f["properties"]["devices"],
            "attributes": f["properties"]["attributes"],
        }
        for f in collection["features"]
    ]
    rows = exported(client, "/v1/export/sites", fmt, DATASETS["sites"].columns)
    assert rows == expected


def test_geojson_export_is_a_feature_collection_with_site_points(
    client: TestClient, span: tuple[str, str]
) -> None:
    response = client.get(f"/v1/export/aqi?format=geojson&from={span[0]}&to={span[1]}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    document = response.json()
    assert document["type"] == "FeatureCollection"
    assert document["license_url"] == NLOD_URL
    assert "distributed by Narvik" in document["attribution"]
    sites = {
        f["id"]: f["geometry"]["coordinates"] for f in client.get("/v1/sites").json()["features"]
    }
    assert document["features"]
    for feature in document["features"]:
        properties = feature["properties"]
        assert feature["geometry"] == {"type": "Point", "coordinates": sites[properties["site_id"]]}
        assert 1 <= properties["level"] <= 6


def test_readings_geojson_places_each_series_at_its_site(
    client: TestClient, simulated: SimulatedData, span: tuple[str, str]
) -> None:
    series_id = one(simulated.url, "SELECT id FROM series WHERE metric = 'no2' ORDER BY id LIMIT 1")
    response = client.get(
        f"/v1/export/readings?format=geojson&series={series_id}&bucket=1d&from={span[0]}&to={span[1]}"
    )
    assert response.status_code == 200
    features = response.json()["features"]
    assert features
    assert all(f["geometry"]["type"] == "Point" for f in features)
    assert {f["properties"]["series_id"] for f in features} == {series_id}


def test_parquet_is_streamed_one_row_group_per_chunk(
    client: TestClient, simulated: SimulatedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows leave the database in chunks and each chunk leaves as a row group, so an
    export never holds more than a chunk in memory."""
    monkeypatch.setattr(api.export_fetch, "CHUNK_ROWS", 200)
    series_id = one(simulated.url, BUSIEST_PM25)
    end = datetime.fromtimestamp(simulated.end, UTC)
    with client.stream(
        "GET",
        f"/v1/export/readings?format=parquet&series={series_id}"
        f"&from={iso(end - timedelta(days=1))}&to={iso(end)}",
    ) as response:
        assert response.status_code == 200
        pieces = list(response.iter_bytes())
    data = b"".join(pieces)
    parquet = pq.ParquetFile(pa.BufferReader(data))
    assert parquet.metadata.num_rows > 1000
    assert parquet.num_row_groups >= parquet.metadata.num_rows // 200


def _paged_exports(span: tuple[str, str]) -> list[str]:
    window = f"from={span[0]}&to={span[1]}"
    end = datetime.fromisoformat(span[1])
    hours = f"from={iso(end - timedelta(hours=6))}&to={span[1]}"
    return [
        "/v1/export/sites",
        "/v1/export/devices",
        "/v1/export/metrics",
        "/v1/export/latest",
        "/v1/export/traffic-adt",
        f"/v1/export/aqi?{window}",
        f"/v1/export/energy-daily?{window}",
        f"/v1/export/traffic-daily?{window}",
        f"/v1/export/traffic-hourly?{window}",
        f"/v1/export/readings?bucket=1h&{window}",
        f"/v1/export/readings?metric=pm25,no2&{hours}",
    ]


def test_small_pages_make_the_same_files(
    client: TestClient, span: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every dataset fetched in pages of 50 rows (keyset on its key; raw readings in
    time windows) exports byte for byte what one big page does: no row twice, none
    missed, same order."""
    whole = {path: client.get(path) for path in _paged_exports(span)}
    monkeypatch.setattr(api.export_fetch, "CHUNK_ROWS", 50)
    for path, expected in whole.items():
        assert expected.status_code == 200, (path, expected.text[:300])
        assert expected.content.count(b"\n") > 2, path
        paged = client.get(path)
        assert paged.status_code == 200
        assert paged.content == expected.content, path


# ------------------------------------------------------------------ refusals


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = response.json()
    return document


@pytest.mark.parametrize("bucket", ["raw", "1m"])
def test_traffic_is_exported_only_in_aggregates_of_15_minutes_or_more(
    client: TestClient, span: tuple[str, str], bucket: str
) -> None:
    for metric in ("vehicle_count", "heavy_vehicle_count", "speed"):
        body = problem(
            client.get(
                f"/v1/export/readings?metric={metric}&bucket={bucket}&from={span[0]}&to={span[1]}"
            ),
            400,
        )
        assert body["parameter"] == "bucket"
        assert metric in body["detail"]
        assert "15 minutes" in body["detail"]
    # hourly aggregates are published
    assert client.get("/v1/export/readings?metric=vehicle_count&bucket=1h").status_code == 200
    # a whole road-section site holds nothing else: nothing to export raw
    site = problem(client.get(f"/v1/export/readings?site=e6-ornes-nord&bucket={bucket}"), 400)
    assert "15 minutes" in site["detail"]


@pytest.mark.parametrize("bucket", ["raw", "1m"])
def test_the_default_readings_export_leaves_traffic_out_and_says_so(
    client: TestClient, bucket: str
) -> None:
    """The catalogue's download link is the export without parameters: it must answer,
    so what the privacy rule forbids is left out (and said to be), not refused."""
    response = client.get(f"/v1/export/readings?bucket={bucket}&format=parquet")
    assert response.status_code == 200, response.text
    note = response.headers["x-export-note"]
    assert "vehicle_count" in note
    assert "bucket=1h" in note
    table = pq.read_table(pa.BufferReader(response.content))
    assert table.num_rows > 0
    assert table.schema.metadata[b"note"].decode() == note
    assert not {"vehicle_count", "heavy_vehicle_count", "speed"} & set(
        table.column("metric").to_pylist()
    )
    # aggregates of an hour do carry traffic, and say nothing was left out
    hourly = client.get("/v1/export/readings?bucket=1h&metric=vehicle_count")
    assert "x-export-note" not in hourly.headers


def test_range_beyond_the_limit_is_refused_naming_it(client: TestClient) -> None:
    body = problem(
        client.get("/v1/export/aqi?from=2020-01-01T00:00:00Z&to=2024-01-01T00:00:00Z"), 400
    )
    assert body["parameter"] == "from"
    assert body["limit_days"] == 400
    assert "at most 400 days" in body["detail"]
    assert "api_max_range_days" in body["detail"]


@pytest.mark.parametrize(
    ("path", "status", "parameter"),
    [
        ("/v1/export/aqi?format=xlsx", 400, "format"),
        ("/v1/export/metrics?format=geojson", 400, "format"),
        ("/v1/export/readings?bucket=5m", 400, "bucket"),
        ("/v1/export/aqi?bucket=1h", 400, "bucket"),
        ("/v1/export/readings?series=x", 400, "series"),
        ("/v1/export/aqi?metric=pm25", 400, "metric"),
        ("/v1/export/sites?from=2024-01-01T00:00:00Z", 400, "from"),
        ("/v1/export/aqi?from=2024-01-01T00:00:00", 400, "from"),
        ("/v1/export/aqi?from=2024-02-01T00:00:00Z&to=2024-01-01T00:00:00Z", 400, "from"),
    ],
)
def test_bad_parameters_are_problems_naming_the_parameter(
    client: TestClient, path: str, status: int, parameter: str
) -> None:
    assert problem(client.get(path), status)["parameter"] == parameter


def test_unknown_dataset_and_empty_selection_are_not_found(client: TestClient) -> None:
    assert "aqi" in problem(client.get("/v1/export/weather"), 404)["detail"]
    problem(client.get("/v1/export/readings?series=999999"), 404)


def test_parquet_is_never_gzipped_but_csv_is(client: TestClient, span: tuple[str, str]) -> None:
    """Parquet pages are compressed already (zstd): gzip over them is CPU for nothing."""
    gzip = {"accept-encoding": "gzip"}
    query = f"from={span[0]}&to={span[1]}"
    parquet = client.get(f"/v1/export/aqi?format=parquet&{query}", headers=gzip)
    assert parquet.status_code == 200
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    assert "content-encoding" not in parquet.headers
    assert parquet.content.startswith(b"PAR1")
    assert pq.ParquetFile(pa.BufferReader(parquet.content)).metadata.num_rows > 0
    csv_export = client.get(f"/v1/export/aqi?format=csv&{query}", headers=gzip)
    assert csv_export.headers["content-encoding"] == "gzip"
    geojson = client.get(f"/v1/export/aqi?format=geojson&{query}", headers=gzip)
    assert geojson.headers["content-encoding"] == "gzip"


# ------------------------------------------------------------------ catalogue


def test_catalogue_is_json_ld_with_the_request_base_url(client: TestClient) -> None:
    response = client.get("/v1/catalog")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ld+json"
    assert response.headers["etag"]
    assert "distributed by Narvik" in response.headers["x-attribution"]
    document = response.json()
    assert document["@type"] == "dcat:Catalog"
    urls = [
        d["dcat:downloadURL"]["@id"]
        for dataset in document["dcat:dataset"]
        for d in dataset["dcat:distribution"]
        if "dcat:downloadURL" in d
    ]
    assert "http://testserver/v1/export/aqi?format=parquet" in urls
    # every download URL answers
    assert client.get("/v1/export/metrics?format=csv").status_code == 200


def test_the_root_links_exports_and_catalogue(client: TestClient) -> None:
    links = {link["rel"]: link["href"] for link in client.get("/v1").json()["links"]}
    assert links["catalog"].endswith("/v1/catalog")
    assert client.get(links["catalog"]).status_code == 200


def test_export_index_lists_datasets_formats_and_columns(client: TestClient) -> None:
    index = {d["id"]: d for d in client.get("/v1/export").json()["data"]}
    assert set(index) == set(DATASETS)
    assert index["metrics"]["formats"] == ["csv", "parquet"]
    assert index["aqi"]["links"]["parquet"] == "http://testserver/v1/export/aqi?format=parquet"
    names = [c["name"] for c in index["readings"]["columns"]["1h"]]
    assert names[:7] == ["series_id", "site_id", "device_id", "metric", "unit", "time", "end"]
    aqi = {c["name"]: c for c in index["aqi"]["columns"][""]}
    assert aqi["pm25_ug_m3"]["unit"] == "ug/m3"
