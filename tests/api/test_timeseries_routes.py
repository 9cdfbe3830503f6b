"""Time series on the simulated database: aggregates from the rollups (matching the
NumPy core's `finalize`), raw readings, cursor pagination to the end, the 15-minute
rule for traffic, range and page limits, ETags and gzip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.params import MAX_PAGE
from core.rollups import Partials, finalize
from devices.catalogue import load_catalogue, narvik_catalogue_path
from tests.fixtures.simulated import SimulatedData


def iso(moment: datetime) -> str:
    return moment.isoformat()


def series_id(url: str, device: str, metric: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT id FROM series WHERE device_id = %s AND metric = %s", (device, metric)
        ).fetchone()
    assert row is not None
    return int(row[0])


def pages(client: TestClient, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page, following `next` to the end."""
    documents = []
    response = client.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        document = response.json()
        documents.append(document)
        if document["next"] is None:
            return documents
        assert f'<{document["next"]}>; rel="next"' in response.headers.get_list("link")
        response = client.get(document["next"])


@pytest.fixture(scope="module")
def window(simulated: SimulatedData) -> tuple[datetime, datetime]:
    return (
        datetime.fromtimestamp(simulated.start, UTC),
        datetime.fromtimestamp(simulated.end, UTC),
    )


def test_hourly_aggregates_are_the_cores_finalize_of_the_rollups(
    client: TestClient, simulated: SimulatedData, window: tuple[datetime, datetime]
) -> None:
    start, end = window
    sid = series_id(simulated.url, "aq-sentrum", "pm25")
    response = client.get(
        f"/v1/series/{sid}/data", params={"from": iso(start), "to": iso(end), "bucket": "1h"}
    )
    assert response.status_code == 200
    document = response.json()
    assert (document["series"], document["metric"], document["unit"]) == ([sid], "pm25", "ug/m3")
    assert document["meta"]["license"] == "NLOD-2.0"
    assert document["next"] is None
    points = document["data"]

    with psycopg.connect(simulated.url) as conn:
        rows = conn.execute(
            """SELECT (extract(epoch FROM bucket) * 1e6)::int8, count, good_count, sum, sum_sq,
                      min, max, (extract(epoch FROM first_time) * 1e6)::int8, first_value,
                      (extract(epoch FROM last_time) * 1e6)::int8, last_value
               FROM rollups WHERE series_id = %s AND resolution = '1h'
                 AND bucket >= %s AND bucket < %s ORDER BY bucket""",
            (sid, start, end),
        ).fetchall()
    c = [np.array(col) for col in zip(*rows, strict=True)]
    partials = Partials(
        "1h",
        np.full(len(rows), sid, np.int32),
        c[0].astype(np.int64),
        c[1].astype(np.int64),
        c[2].astype(np.int64),
        c[3].astype(np.float64),
        c[4].astype(np.float64),
        c[5].astype(np.float64),
        c[6].astype(np.float64),
        c[7].astype(np.int64),
        c[8].astype(np.float64),
        c[9].astype(np.int64),
        c[10].astype(np.float64),
    )
    spec = next(d for d in load_catalogue(narvik_catalogue_path()).devices if d.id == "aq-sentrum")
    summary = finalize(partials, expected_interval_s=spec.interval_s)

    assert len(points) == len(rows) > 60
    times = [datetime.fromisoformat(p["time"]) for p in points]
    assert [int(t.timestamp() * 1e6) for t in times] == summary.bucket.tolist()
    ends = [int(datetime.fromisoformat(p["end"]).timestamp() * 1e6) for p in points]
    assert ends == summary.bucket_end.tolist()
    assert [p["count"] for p in points] == summary.count.tolist()
    assert [p["good_count"] + p["suspect_count"] for p in points] == summary.count.tolist()
    np.testing.assert_allclose([p["mean"] for p in points], summary.mean, rtol=1e-12)
    np.testing.assert_allclose([p["std"] for p in points], summary.std, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose([p["min"] for p in points], summary.min)
    np.testing.assert_allclose([p["max"] for p in points], summary.max)
    # the API reads the reporting interval off the data; the catalogue's is the truth
    np.testing.assert_allclose([p["coverage"] for p in points], summary.coverage, rtol=1e-9)


def test_daily_buckets_are_local_days(
    client: TestClient, simulated: SimulatedData, window: tuple[datetime, datetime]
) -> None:
    start, end = window
    sid = series_id(simulated.url, "aq-sentrum", "no2")
    points = client.get(
        f"/v1/series/{sid}/data",
        params={"from": iso(start - timedelta(days=1)), "to": iso(end), "bucket": "1d"},
    ).json()["data"]
    assert len(points) >= 3
    for point in points:
        local = datetime.fromisoformat(point["time"]).astimezone(
            __import__("zoneinfo").ZoneInfo("Europe/Oslo")
        )
        assert (local.hour, local.minute) == (0, 0)
        length = datetime.fromisoformat(point["end"]) - datetime.fromisoformat(point["time"])
        assert timedelta(hours=23) <= length <= timedelta(hours=25)


def test_raw_readings_paginate_to_the_end_without_gaps_or_repeats(
    client: TestClient, simulated: SimulatedData, window: tuple[datetime, datetime]
) -> None:
    start, _ = window
    sid = series_id(simulated.url, "aq-sentrum", "temperature")
    params = {
        "from": iso(start),
        "to": iso(start + timedelta(hours=6)),
        "bucket": "raw",
        "limit": 50,
    }
    documents = pages(client, f"/v1/series/{sid}/data", params)
    readings = [p for d in documents for p in d["data"]]
    with psycopg.connect(simulated.url) as conn:
        expected = conn.execute(
            "SELECT time, value, quality FROM readings WHERE series_id = %s"
            " AND time >= %s AND time < %s ORDER BY time",
            (sid, start, start + timedelta(hours=6)),
        ).fetchall()
    assert len(documents) == -(-len(expected) // 50)
    assert len(expected) > 100
    assert [(datetime.fromisoformat(r["time"]), r["value"], r["quality"]) for r in readings] == [
        tuple(row) for row in expected
    ]
    assert all(r["series_id"] == sid for r in readings)


def test_aggregate_pages_join_up_to_the_whole(
    client: TestClient, simulated: SimulatedData, window: tuple[datetime, datetime]
) -> None:
    start, end = window
    sid = series_id(simulated.url, "aq-sentrum", "pm10")
    params = {"from": iso(start), "to": iso(end), "bucket": "1h"}
    whole = client.get(f"/v1/series/{sid}/data", params=params).json()["data"]
    paged = [
        p
        for d in pages(client, f"/v1/series/{sid}/data", {**params, "limit": 7})
        for p in d["data"]
    ]
    assert paged == whole


def test_site_and_metric_is_the_same_series(
    client: TestClient, simulated: SimulatedData, window: tuple[datetime, datetime]
) -> None:
    start, end = window
    sid = series_id(simulated.url, "aq-sentrum", "no2")
    params = {"from": iso(start), "to": iso(end), "bucket": "1h"}
    by_series = client.get(f"/v1/series/{sid}/data", params=params).json()
    by_site = client.get("/v1/sites/narvik-sentrum/metrics/no2/data", params=params).json()
    assert by_site["data"] == by_series["data"]
    assert by_site["series"] == [sid]
    raw = client.get(
        "/v1/sites/narvik-sentrum/metrics/no2/data",
        params={"from": iso(start), "to": iso(start + timedelta(hours=1)), "bucket": "raw"},
    ).json()["data"]
    assert raw
    assert {r["series_id"] for r in raw} == {sid}


def test_unknown_site_metric_or_pair_is_404(client: TestClient) -> None:
    for path in (
        "/v1/sites/nowhere/metrics/no2/data",
        "/v1/sites/narvik-sentrum/metrics/nothing/data",
        "/v1/sites/narvik-radhus/metrics/no2/data",  # a building measures no NO2
        "/v1/sites/Bad Id/metrics/no2/data",
        "/v1/series/999999/data",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"


def test_traffic_is_only_served_in_aggregates_of_15_minutes_or_more(
    client: TestClient, simulated: SimulatedData
) -> None:
    sid = series_id(simulated.url, "tc-e6-ornes", "vehicle_count")
    for bucket in ("raw", "1m"):
        response = client.get(f"/v1/series/{sid}/data", params={"bucket": bucket})
        assert response.status_code == 400
        problem = response.json()
        assert problem["parameter"] == "bucket"
        assert "15 minutes" in problem["detail"]
        site = client.get("/v1/sites/e6-ornes-nord/metrics/speed/data", params={"bucket": bucket})
        assert site.status_code == 400
    hourly = client.get(f"/v1/series/{sid}/data", params={"bucket": "1h"})
    assert hourly.status_code == 200
    assert hourly.json()["data"]
    assert client.get(f"/v1/series/{sid}/data", params={"bucket": "1d"}).status_code == 200


@pytest.mark.parametrize(
    ("params", "parameter", "says"),
    [
        ({"limit": MAX_PAGE + 1}, "limit", str(MAX_PAGE)),
        ({"limit": 0}, "limit", "1"),
        ({"bucket": "5m"}, "bucket", "raw"),
        (
            {"from": "2026-01-01T00:00:00+01:00", "to": "2025-01-01T00:00:00+01:00"},
            "from",
            "before",
        ),
        ({"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from", "400 days"),
        ({"from": "yesterday"}, "from", "e.g. 2026-11-01 (local midnight)"),
        ({"from": "2026-01-01T00:00:00"}, "from", "UTC offset"),
        ({"cursor": "not-a-cursor"}, "cursor", "cursor"),
        ({"to": "0001-01-01T00:00:00Z"}, "from", "year"),
    ],
)
def test_bad_parameters_are_problem_json_400s_that_say_the_limit(
    client: TestClient, simulated: SimulatedData, params: dict[str, Any], parameter: str, says: str
) -> None:
    sid = series_id(simulated.url, "aq-sentrum", "pm25")
    response = client.get(f"/v1/series/{sid}/data", params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 400
    assert problem["parameter"] == parameter
    assert says in problem["detail"], problem["detail"]
    assert "psycopg" not in response.text
    assert "SELECT" not in response.text


@pytest.mark.parametrize("series", ["0", "-1", "2147483648", "abc"])
def test_series_ids_outside_the_column_are_400s(client: TestClient, series: str) -> None:
    response = client.get(f"/v1/series/{series}/data")
    assert response.status_code == 400
    assert response.json()["parameter"] == "series_id"


def test_etag_gives_304_and_gzip_applies(
    client: TestClient, simulated: SimulatedData, window: tuple[datetime, datetime]
) -> None:
    start, end = window
    sid = series_id(simulated.url, "aq-sentrum", "pm25")
    path = f"/v1/series/{sid}/data?from={iso(start)}&to={iso(end)}".replace("+", "%2B")
    first = client.get(path, headers={"accept-encoding": "gzip"})
    assert first.status_code == 200
    assert first.headers["content-encoding"] == "gzip"
    assert first.headers["cache-control"] == "public, max-age=60"
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    again = client.get(path, headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    # bypassing the worker's micro-cache, the route itself answers 304 as well
    direct = client.get(path, headers={"if-none-match": etag, "cache-control": "no-cache"})
    assert direct.status_code == 304
    other = client.get(path, headers={"if-none-match": 'W/"something-else"'})
    assert other.status_code == 200
    assert other.json() == first.json()
    plain = client.get(path, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.json() == first.json()
