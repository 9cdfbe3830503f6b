"""Air quality index, energy and traffic indicators on the simulated database, each
list paged to the end."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from core.indicators import AQI_LEVEL_NAMES
from tests.fixtures.simulated import SimulatedData


def all_pages(client: TestClient, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    response = client.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        document = response.json()
        assert document["meta"]["license"] == "NLOD-2.0"
        rows += document["data"]
        if document["next"] is None:
            return rows
        response = client.get(document["next"])


@pytest.fixture(scope="module")
def span(simulated: SimulatedData) -> dict[str, str]:
    return {
        "from": datetime.fromtimestamp(simulated.start - 86400, UTC).isoformat(),
        "to": datetime.fromtimestamp(simulated.end + 86400, UTC).isoformat(),
    }


def count(url: str, query: str, *params: object) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def test_aqi_now_gives_each_stations_latest_hour(
    client: TestClient, simulated: SimulatedData
) -> None:
    stations = client.get("/v1/aqi").json()["data"]
    with psycopg.connect(simulated.url) as conn:
        expected = dict(
            conn.execute("SELECT site_id, max(hour) FROM aqi_hourly GROUP BY site_id").fetchall()
        )
    assert {s["site_id"]: datetime.fromisoformat(s["hour"]) for s in stations} == expected
    for station in stations:
        assert station["label"] == AQI_LEVEL_NAMES[station["level"] - 1]
        assert station["dominant"] in ("pm25", "pm10", "no2", "o3", "so2")
        assert station[station["dominant"]] is not None


def test_aqi_history_pages_to_the_end(
    client: TestClient, simulated: SimulatedData, span: dict[str, str]
) -> None:
    rows = all_pages(client, "/v1/aqi/narvik-sentrum", {**span, "limit": 10})
    assert len(rows) == count(
        simulated.url, "SELECT count(*) FROM aqi_hourly WHERE site_id = 'narvik-sentrum'"
    )
    hours = [r["hour"] for r in rows]
    assert hours == sorted(hours)
    assert len(set(hours)) == len(hours)
    assert client.get("/v1/aqi/nowhere").status_code == 404


def test_energy_per_building_day_and_hour(
    client: TestClient, simulated: SimulatedData, span: dict[str, str]
) -> None:
    daily = all_pages(client, "/v1/energy/daily", {**span, "limit": 13})
    assert len(daily) == count(simulated.url, "SELECT count(*) FROM energy_daily")
    assert len({(r["site_id"], r["day"]) for r in daily}) == len(daily)
    assert all(r["kwh"] >= 0 and 0 <= r["coverage"] <= 1.0001 for r in daily)

    town_hall = all_pages(
        client, "/v1/energy/hourly", {**span, "site": "narvik-radhus", "limit": 25}
    )
    assert town_hall
    assert {r["site_id"] for r in town_hall} == {"narvik-radhus"}
    assert len(town_hall) == count(
        simulated.url, "SELECT count(*) FROM energy_hourly WHERE site_id = 'narvik-radhus'"
    )


def test_traffic_per_counter_hour_day_and_adt(
    client: TestClient, simulated: SimulatedData, span: dict[str, str]
) -> None:
    hourly = all_pages(client, "/v1/traffic/hourly", {**span, "limit": 100})
    assert len(hourly) == count(simulated.url, "SELECT count(*) FROM traffic_hourly")
    keys = [(r["hour"], r["device_id"]) for r in hourly]
    assert keys == sorted(keys)
    one = all_pages(client, "/v1/traffic/hourly", {**span, "device": "tc-e6-ornes"})
    assert one
    assert {r["device_id"] for r in one} == {"tc-e6-ornes"}
    daily = all_pages(client, "/v1/traffic/daily", {**span, "site": "e6-ornes-nord"})
    assert daily
    assert {r["site_id"] for r in daily} == {"e6-ornes-nord"}

    adt = client.get("/v1/traffic/adt").json()["data"]
    assert len(adt) == count(simulated.url, "SELECT count(*) FROM traffic_adt")
    for row in adt:
        assert row["vehicles_per_day"] > 0
        assert row["full_days"] >= 1
    assert client.get("/v1/traffic/adt", params={"device": "nobody"}).json()["data"] == []


def test_indicator_cursors_and_ranges_are_checked(client: TestClient) -> None:
    bad = client.get("/v1/energy/daily", params={"cursor": "@@@"})
    assert bad.status_code == 400
    assert bad.json()["parameter"] == "cursor"
    long = client.get(
        "/v1/traffic/hourly", params={"from": "2000-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    )
    assert long.status_code == 400
    assert "at most 400 days" in long.json()["detail"]
