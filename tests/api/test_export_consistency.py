"""One export, three formats, the same rows (issue 16): CSV, Parquet and GeoJSON of a
selection read back equal, cell for cell; the files say what they hold (units in
Parquet's field metadata and in GeoJSON's columns member); the wide layout holds the
long layout's values; HEAD on an export answers with its headers alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from api.export_formats import Column
from core.units import rounder
from tests.api.test_export import from_json, iso, read_csv, read_parquet
from tests.fixtures.simulated import SimulatedData


def columns_of(client: TestClient, dataset: str, bucket: str = "") -> tuple[Column, ...]:
    """The columns /v1/export says the dataset has (long layout)."""
    index = {d["id"]: d for d in client.get("/v1/export").json()["data"]}
    described = index[dataset]["columns"][bucket]
    return tuple(Column(c["name"], c["type"], c["description"], c.get("unit")) for c in described)


def read_geojson(document: dict[str, Any], columns: tuple[Column, ...]) -> list[dict[str, Any]]:
    assert [c["name"] for c in document["columns"]] == [c.name for c in columns]
    return [
        {c.name: from_json(f["properties"][c.name], c) for c in columns}
        for f in document["features"]
    ]


def three_formats(client: TestClient, path: str, columns: tuple[Column, ...]) -> list[Any]:
    """The export at ``path`` as CSV, Parquet and GeoJSON rows."""
    out = []
    for fmt in ("csv", "parquet", "geojson"):
        response = client.get(f"{path}&format={fmt}")
        assert response.status_code == 200, (fmt, response.text[:300])
        if fmt == "csv":
            out.append(read_csv(response.content, columns))
        elif fmt == "parquet":
            out.append(read_parquet(response.content, columns))
        else:
            out.append(read_geojson(response.json(), columns))
    return out


@pytest.fixture(scope="module")
def window(simulated: SimulatedData) -> tuple[str, str]:
    end = datetime.fromtimestamp(simulated.end, UTC)
    return iso(end - timedelta(hours=6)), iso(end)


@pytest.mark.parametrize(
    ("dataset", "bucket", "query"),
    [
        ("readings", "raw", "metric=pm25,no2,temperature"),
        ("readings", "1h", "site=narvik-sentrum,narvik-torg"),
        ("readings", "1h", "metric=vehicle_count,speed"),
        ("aqi", "", ""),
        ("traffic-hourly", "", ""),
        ("energy-hourly", "", ""),
        ("latest", "", ""),
    ],
)
def test_csv_parquet_and_geojson_hold_the_same_rows(
    client: TestClient, window: tuple[str, str], dataset: str, bucket: str, query: str
) -> None:
    columns = columns_of(client, dataset, "" if dataset != "readings" else bucket)
    params = [query] if query else []
    if dataset != "latest":
        params.append(f"from={window[0]}&to={window[1]}")
    if dataset == "readings":
        params.append(f"bucket={bucket}")
    csv_rows, parquet_rows, geojson_rows = three_formats(
        client, f"/v1/export/{dataset}?{'&'.join(params)}", columns
    )
    assert len(csv_rows) > 5
    assert csv_rows == parquet_rows == geojson_rows
    names = [c.name for c in columns]
    if "metric" in names:
        # a row says what it is, whatever the format: no join with /v1/series needed
        for row in csv_rows:
            assert all(row[k] for k in ("metric", "unit", "device_id")), row


def test_the_files_say_their_units(client: TestClient, window: tuple[str, str]) -> None:
    span = f"from={window[0]}&to={window[1]}"
    parquet = client.get(f"/v1/export/aqi?format=parquet&{span}")
    schema = pq.read_schema(pa.BufferReader(parquet.content))
    assert schema.field("pm25_ug_m3").metadata[b"unit"] == b"ug/m3"
    assert b"hourly mean" in schema.field("pm25_ug_m3").metadata[b"description"]
    assert schema.metadata[b"license"] == b"NLOD-2.0"
    csv_header = client.get(f"/v1/export/aqi?{span}").text.splitlines()[0]
    assert "pm25_ug_m3" in csv_header.split(",")
    geojson = client.get(f"/v1/export/aqi?format=geojson&{span}").json()
    units = {c["name"]: c.get("unit") for c in geojson["columns"]}
    assert units["no2_ug_m3"] == "ug/m3"


def test_wide_rows_hold_the_long_rows_values(client: TestClient, window: tuple[str, str]) -> None:
    """Raw, wide: one row per device and time, a column per metric named with its unit
    and a flag beside it; the same numbers as the long export."""
    span = f"from={window[0]}&to={window[1]}&device=aq-sentrum"
    long = read_parquet(
        client.get(f"/v1/export/readings?format=parquet&{span}").content,
        columns_of(client, "readings", "raw"),
    )
    response = client.get(f"/v1/export/readings?format=parquet&layout=wide&{span}")
    assert response.status_code == 200, response.text
    assert "-raw-wide-" in response.headers["content-disposition"]
    table = pq.read_table(pa.BufferReader(response.content))
    metrics = sorted({r["metric"] for r in long})
    units = {r["metric"]: r["unit"] for r in long}
    value_columns = [n for n in table.column_names if n not in ("time", "site_id", "device_id")]
    assert len(value_columns) == 2 * len(metrics)
    assert "pm25_ug_m3" in value_columns
    assert "temperature_degc" in value_columns
    wide = table.to_pylist()
    assert len(wide) == len({(r["device_id"], r["time"]) for r in long})
    by_key = {(r["time"], r["metric"]): r for r in long}
    column_of = {
        m: next(n for n in value_columns if n.startswith(m + "_") and n != f"{m}_quality")
        for m in metrics
    }
    for metric, name in column_of.items():
        assert table.schema.field(name).metadata[b"unit"].decode() == units[metric]
    for row in wide:
        for metric in metrics:
            source = by_key.get((row["time"], metric))
            value = row[column_of[metric]]
            assert value == (None if source is None else source["value"])
            flag = row[f"{metric}_quality"]
            assert flag == (None if source is None else source["quality_name"])


def test_wide_hourly_rows_hold_the_json_means_and_sums(
    client: TestClient, window: tuple[str, str]
) -> None:
    span = f"from={window[0]}&to={window[1]}"
    response = client.get(f"/v1/export/readings?bucket=1h&layout=wide&site=narvik-sentrum&{span}")
    assert response.status_code == 200
    rows = read_csv(
        response.content,
        tuple(
            Column(
                n, "timestamp" if n in ("time", "end") else "text" if n.endswith("_id") else "float"
            )
            for n in response.text.splitlines()[0].split(",")
        ),
    )
    assert rows
    series = {
        s["metric"]: s["id"]
        for s in client.get("/v1/series").json()["data"]
        if s["device_id"] == rows[0]["device_id"]
    }
    metrics = {m["key"]: m for m in client.get("/v1/metrics").json()["data"]}
    for metric, series_id in series.items():
        data = client.get(
            f"/v1/series/{series_id}/data",
            params={"bucket": "1h", "from": window[0], "to": window[1]},
        ).json()["data"]
        name = next(n for n in rows[0] if n.startswith(metric + "_"))
        kind = {"gauge": "mean", "count": "sum", "cumulative": "last"}[
            metrics[metric]["value_type"]
        ]
        step = metrics[metric]["resolution"]
        expected = {datetime.fromisoformat(p["time"]): p[kind] for p in data}
        got = {r["time"]: r[name] for r in rows}
        assert got.keys() == expected.keys()
        for time, value in expected.items():
            assert got[time] == pytest.approx(value, abs=step / 2 + 1e-9)


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/v1/export/aqi?layout=wide", "layout"),
        ("/v1/export/readings?layout=tall", "layout"),
    ],
)
def test_wide_is_for_readings_only(client: TestClient, path: str, parameter: str) -> None:
    response = client.get(path)
    assert response.status_code == 400
    assert response.json()["parameter"] == parameter


def test_head_on_an_export_says_what_a_get_would_send_and_streams_nothing(
    client: TestClient,
) -> None:
    gate = client.app.state.export_gate  # type: ignore[attr-defined]
    head = client.head("/v1/export/readings?format=parquet&bucket=1h")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == "application/vnd.apache.parquet"
    assert head.headers["content-disposition"].startswith('attachment; filename="smartby-')
    assert gate.total == 0  # no export slot taken, and none left behind
    # what a GET would refuse, a HEAD refuses too
    assert client.head("/v1/export/readings?series=999999").status_code == 404
    assert client.head("/v1/export/readings?metric=speed&bucket=raw").status_code == 400


def test_only_the_files_are_rounded_never_what_the_api_serves(
    client: TestClient, simulated: SimulatedData, window: tuple[str, str]
) -> None:
    """/v1 serves each value as stored and computed (an hourly mean of 0.1-resolved
    readings has many digits); the file rounds it to the metric's resolution."""
    with psycopg.connect(simulated.url) as conn:
        row = conn.execute(
            "SELECT s.id FROM series s WHERE s.metric = 'no2' ORDER BY s.id LIMIT 1"
        ).fetchone()
    assert row is not None
    series_id = row[0]
    query = {"bucket": "1h", "from": window[0], "to": window[1]}
    served = client.get(f"/v1/series/{series_id}/data", params=query).json()["data"]
    exported = read_csv(
        client.get(
            f"/v1/export/readings?series={series_id}&bucket=1h&from={window[0]}&to={window[1]}"
        ).content,
        columns_of(client, "readings", "1h"),
    )
    step = client.get("/v1/metrics/no2").json()["data"]["resolution"]
    assert [r["mean"] for r in exported] == [rounder(step)(p["mean"]) for p in served]
    assert any(rounder(step)(p["mean"]) != p["mean"] for p in served)  # /v1 is not rounded
