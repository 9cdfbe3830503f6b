"""The /v1 root, sites, devices, metrics, series and latest values, on the simulated
Narvik database."""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.licence import NLOD_URL
from db.registry import PUBLIC_DEVICE_COLUMNS
from tests.fixtures.simulated import SimulatedData

ATTRIBUTION = (
    "Contains data under the Norwegian licence for Open Government data (NLOD) "
    "distributed by Narvik"
)


def assert_licensed(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert f'<{NLOD_URL}>; rel="license"' in headers.get_list("link")
    assert headers["x-license"] == "NLOD-2.0"
    assert headers["x-attribution"] == ATTRIBUTION


def test_root_links_everything_and_states_the_licence(client: TestClient) -> None:
    response = client.get("/v1")
    assert response.status_code == 200
    assert_licensed(response)
    document = response.json()
    assert document["meta"] == {
        "license": "NLOD-2.0",
        "license_url": NLOD_URL,
        "attribution": ATTRIBUTION,
    }
    hrefs = {link["rel"]: link["href"] for link in document["links"]}
    assert hrefs["license"] == NLOD_URL
    assert hrefs["sites"] == "http://testserver/v1/sites"
    assert hrefs["service-desc"] == "http://testserver/openapi.json"
    for rel in ("sites", "devices", "metrics", "series", "latest", "aqi", "traffic-adt"):
        assert client.get(hrefs[rel]).status_code == 200, rel


def test_sites_are_geojson_with_licence_members_and_filter_by_kind_and_bbox(
    client: TestClient, simulated: SimulatedData
) -> None:
    response = client.get("/v1/sites")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    assert_licensed(response)
    collection = response.json()
    assert collection["type"] == "FeatureCollection"
    assert collection["license"] == "NLOD-2.0"
    assert collection["attribution"] == ATTRIBUTION
    with psycopg.connect(simulated.url) as conn:
        expected = conn.execute("SELECT id, lon, lat, kind FROM sites ORDER BY id").fetchall()
    features = collection["features"]
    assert [
        (f["id"], *f["geometry"]["coordinates"], f["properties"]["kind"]) for f in features
    ] == [tuple(row) for row in expected]
    assert all(f["type"] == "Feature" and f["geometry"]["type"] == "Point" for f in features)

    buildings = client.get("/v1/sites", params={"kind": "building"}).json()["features"]
    assert buildings
    assert {f["properties"]["kind"] for f in buildings} == {"building"}

    lon, lat = features[0]["geometry"]["coordinates"]
    box = f"{lon - 0.0001},{lat - 0.0001},{lon + 0.0001},{lat + 0.0001}"
    inside = client.get("/v1/sites", params={"bbox": box}).json()["features"]
    assert features[0]["id"] in [f["id"] for f in inside]
    assert len(inside) < len(features)
    far = client.get("/v1/sites", params={"bbox": "0,0,1,1"}).json()["features"]
    assert far == []


@pytest.mark.parametrize(
    "bbox",
    ["1,2,3", "a,b,c,d", "10,0,5,1", "0,0,1,100", "nan,0,1,1", "0,0,1,inf"],
)
def test_a_bad_bbox_is_a_400_naming_it(client: TestClient, bbox: str) -> None:
    response = client.get("/v1/sites", params={"bbox": bbox})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["parameter"] == "bbox"
    assert_licensed(response)


def test_one_site_and_unknown_sites(client: TestClient) -> None:
    site = client.get("/v1/sites/narvik-sentrum")
    assert site.status_code == 200
    feature = site.json()
    assert feature["id"] == "narvik-sentrum"
    assert feature["license"] == "NLOD-2.0"
    assert "aq-sentrum" in feature["properties"]["devices"]
    for unknown in ("nowhere", "Not A Valid Id", "x" * 100):
        response = client.get(f"/v1/sites/{unknown}")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 404


def test_devices_show_public_fields_only(client: TestClient, simulated: SimulatedData) -> None:
    devices = client.get("/v1/devices").json()["data"]
    with psycopg.connect(simulated.url) as conn:
        count = conn.execute("SELECT count(*) FROM devices").fetchone()
    assert count is not None
    assert len(devices) == count[0]
    for device in devices:
        assert set(device) == {*PUBLIC_DEVICE_COLUMNS, "metrics"}
    assert "secret" not in client.get("/v1/devices").text

    traffic = client.get("/v1/devices", params={"kind": "traffic"}).json()["data"]
    assert traffic
    assert {d["kind"] for d in traffic} == {"traffic"}
    assert set(traffic[0]["metrics"]) == {"vehicle_count", "heavy_vehicle_count", "speed"}
    at_site = client.get("/v1/devices", params={"site": "narvik-sentrum"}).json()["data"]
    assert [d["id"] for d in at_site] == ["aq-sentrum"]

    one = client.get("/v1/devices/aq-sentrum").json()["data"]
    assert one["id"] == "aq-sentrum"
    assert one["site_id"] == "narvik-sentrum"
    assert client.get("/v1/devices/no-such-device").status_code == 404


def test_bad_filters_are_400s_naming_the_parameter(client: TestClient) -> None:
    for path, params, parameter in (
        ("/v1/devices", {"kind": "submarine"}, "kind"),
        ("/v1/devices", {"site": "Bad Site!"}, "site"),
        ("/v1/series", {"metric": "PM 2.5"}, "metric"),
        ("/v1/latest", {"site": "\x00"}, "site"),
        ("/v1/sites", {"kind": "castle"}, "kind"),
    ):
        response = client.get(path, params=params)
        assert response.status_code == 400, (path, params)
        problem = response.json()
        assert problem["parameter"] == parameter
        assert parameter in problem["detail"]


def test_metric_catalogue(client: TestClient) -> None:
    metrics = client.get("/v1/metrics").json()["data"]
    keys = [m["key"] for m in metrics]
    assert keys == sorted(keys)
    assert {"pm25", "no2", "energy", "vehicle_count"} <= set(keys)
    pm25 = client.get("/v1/metrics/pm25").json()["data"]
    assert pm25["unit"] == "ug/m3"
    assert pm25["unit_symbol"] == "µg/m³"
    assert pm25["definition_uri"].startswith("http://dd.eionet.europa.eu/")
    assert client.get("/v1/metrics/nothing").status_code == 404
    assert client.get("/v1/metrics/NOT-A-KEY").status_code == 404


def test_series_filters(client: TestClient, simulated: SimulatedData) -> None:
    everything = client.get("/v1/series").json()["data"]
    with psycopg.connect(simulated.url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM series ORDER BY id")]
    assert [s["id"] for s in everything] == ids
    pm25 = client.get("/v1/series", params={"metric": "pm25"}).json()["data"]
    assert pm25
    assert {s["metric"] for s in pm25} == {"pm25"}
    at_site = client.get("/v1/series", params={"site": "narvik-sentrum", "metric": "no2"}).json()[
        "data"
    ]
    assert len(at_site) == 1
    assert at_site[0]["device_id"] == "aq-sentrum"
    energy = client.get("/v1/series", params={"kind": "energy", "device": "no-such"}).json()
    assert energy["data"] == []


def test_latest_value_of_every_series_with_time_and_flag(
    client: TestClient, simulated: SimulatedData
) -> None:
    response = client.get("/v1/latest")
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("public, max-age=")
    latest = {row["series_id"]: row for row in response.json()["data"]}
    with psycopg.connect(simulated.url) as conn:
        expected = conn.execute(
            """SELECT DISTINCT ON (r.series_id) r.series_id, r.time, r.value, r.quality, m.domain
               FROM readings r JOIN series se ON se.id = r.series_id
               JOIN metrics m ON m.key = se.metric
               ORDER BY r.series_id, r.time DESC"""
        ).fetchall()
    assert set(latest) == {row[0] for row in expected}
    for series_id, time, value, quality, domain in expected:
        row = latest[series_id]
        if domain == "traffic":
            # only aggregates of 15 minutes or more: the latest complete hour
            assert row["aggregate"] == "1h"
            assert row["quality"] is None
            assert row["time"].endswith(":00:00Z")
        else:
            assert row["aggregate"] == "raw"
            assert (row["value"], row["quality"]) == (value, quality)
            assert datetime.fromisoformat(row["time"]) == time

    pm25 = client.get("/v1/latest", params={"metric": "pm25"}).json()["data"]
    assert pm25
    assert {r["metric"] for r in pm25} == {"pm25"}
    energy_at = client.get("/v1/latest", params={"kind": "energy", "site": "narvik-radhus"}).json()[
        "data"
    ]
    assert all(r["kind"] == "energy" and r["site_id"] == "narvik-radhus" for r in energy_at)
