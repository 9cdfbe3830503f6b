"""The geospatial functions of SensorThings $filter, computed in SQL without
PostGIS (`api.sensorthings.geo`), against sites placed where the answer is known
by construction: inside a polygon's shell, inside its hole, on its outer and inner
edges and at a corner, outside it; on a line's interior, at an inner vertex, at its
end, beside it.  The expected sets are those of the Simple Features definitions
(OGC 06-104r4 §6.1.15) as PostGIS computes them for these shapes."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app
from db.migrate import migrate
from tests.api.conftest import UNLIMITED
from tests.fixtures.services import Services

ROOT = "/sta/v1.1"
GEO_DATABASE = "smartby_sta_geo"

#: a 10 × 10 square with a 2 × 2 hole in the middle
SQUARE = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (4 4, 6 4, 6 6, 4 6, 4 4))"
#: three points, two segments: (0 20) → (10 20) → (10 30)
LINE = "LINESTRING (0 20, 10 20, 10 30)"
PLACES = {
    "in-shell": (1.0, 1.0),
    "in-hole": (5.0, 5.0),
    "on-edge": (10.0, 5.0),
    "on-hole-edge": (4.0, 5.0),
    "corner": (0.0, 0.0),
    "outside": (11.0, 5.0),
    "line-middle": (5.0, 20.0),
    "line-vertex": (10.0, 20.0),
    "line-end": (10.0, 30.0),
    "off-line": (5.0, 21.0),
}


@pytest.fixture(scope="module")
def geo_client(services: Services) -> Iterator[TestClient]:
    services.cluster.ensure_database(GEO_DATABASE)
    url = services.cluster.url(GEO_DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("TRUNCATE readings, series, devices, sites RESTART IDENTITY CASCADE")
        for site, (lon, lat) in PLACES.items():
            conn.execute(
                "INSERT INTO sites (id, name, kind, municipality, lon, lat) VALUES"
                " (%s, %s, 'roadside', 'Narvik', %s, %s)",
                (site, site, lon, lat),
            )
            conn.execute(
                "INSERT INTO devices (id, site_id, kind) VALUES (%s, %s, 'air_quality')",
                (f"aq-{site}", site),
            )
            conn.execute(
                "INSERT INTO series (device_id, metric) VALUES (%s, 'pm25')", (f"aq-{site}",)
            )
            conn.execute(
                "INSERT INTO readings (time, series_id, value, quality) SELECT"
                " '2026-01-01T00:00:00Z', id, 1, 1 FROM series WHERE device_id = %s",
                (f"aq-{site}",),
            )
    settings = services.settings(database_url=url, api_rate_limit=UNLIMITED)
    with TestClient(create_app(settings)) as client:
        yield client


def matching(client: TestClient, expression: str, entity_set: str = "Locations") -> set[str]:
    response = client.get(f"{ROOT}/{entity_set}", params={"$filter": expression, "$top": 1000})
    assert response.status_code == 200, response.text
    found: set[str] = set()
    for entity in response.json()["value"]:
        identity: Any = entity["@iot.id"]
        found.add(identity if isinstance(identity, str) else str(identity))
    return found


SQUARE_PLACES = {"in-shell", "in-hole", "on-edge", "on-hole-edge", "corner", "outside"}
LINE_PLACES = {"line-middle", "line-vertex", "line-end", "off-line"}


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("st_within", {"in-shell"}),
        ("st_intersects", {"in-shell", "on-edge", "on-hole-edge", "corner"}),
        ("geo.intersects", {"in-shell", "on-edge", "on-hole-edge", "corner"}),
        ("st_touches", {"on-edge", "on-hole-edge", "corner"}),
        ("st_disjoint", set(PLACES) - {"in-shell", "on-edge", "on-hole-edge", "corner"}),
        ("st_overlaps", set()),
        ("st_crosses", set()),
        ("st_equals", set()),
        ("st_contains", set()),  # a point contains no polygon
    ],
)
def test_point_against_a_polygon_with_a_hole(
    geo_client: TestClient, function: str, expected: set[str]
) -> None:
    assert matching(geo_client, f"{function}(location, geography'{SQUARE}')") == expected


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("st_within", {"line-middle", "line-vertex"}),
        ("st_intersects", {"line-middle", "line-vertex", "line-end"}),
        ("st_touches", {"line-end"}),  # the boundary of a line is its two ends
        ("st_crosses", set()),
        ("st_disjoint", set(PLACES) - {"line-middle", "line-vertex", "line-end"}),
    ],
)
def test_point_against_a_line(geo_client: TestClient, function: str, expected: set[str]) -> None:
    assert matching(geo_client, f"{function}(location, geography'{LINE}')") == expected


def test_arguments_the_other_way_round(geo_client: TestClient) -> None:
    # a polygon contains the points within it; it is within no point
    contains = matching(geo_client, f"st_contains(geography'{SQUARE}', location)")
    assert contains == {"in-shell"}
    assert matching(geo_client, f"st_within(geography'{SQUARE}', location)") == set()
    touches = matching(geo_client, f"st_touches(geography'{LINE}', feature)", "FeaturesOfInterest")
    assert touches == {"line-end"}


def test_points_against_points(geo_client: TestClient) -> None:
    for function in ("st_equals", "st_within", "st_contains", "st_intersects"):
        assert matching(geo_client, f"{function}(location, geography'POINT (5 5)')") == {"in-hole"}
    assert matching(geo_client, "st_touches(location, geography'POINT (5 5)')") == set()
    assert len(matching(geo_client, "st_disjoint(location, geography'POINT (5 5)')")) == 9
    # the location compared with a literal as GeoJSON
    assert matching(geo_client, "location eq geography'POINT (5 5)'") == {"in-hole"}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # the point's interior in the polygon's interior (within)
        ("T********", {"in-shell"}),
        # the point on the boundary
        ("F0F******", {"on-edge", "on-hole-edge", "corner"}),
        # the point outside: interior in the exterior, and the polygon all outside the point
        (
            "FF0FFF212",
            SQUARE_PLACES - {"in-shell", "on-edge", "on-hole-edge", "corner"} | LINE_PLACES,
        ),
        ("t********", {"in-shell"}),  # case does not matter
    ],
)
def test_relate_matches_de9im_patterns(
    geo_client: TestClient, pattern: str, expected: set[str]
) -> None:
    assert (
        matching(geo_client, f"st_relate(location, geography'{SQUARE}', '{pattern}')") == expected
    )


def test_relate_transposes_when_the_point_comes_second(geo_client: TestClient) -> None:
    # polygon first: its interior holds the point's interior
    found = matching(geo_client, f"st_relate(geography'{SQUARE}', location, 'T********')")
    assert found == {"in-shell"}
    # a line's end: the line's boundary meets the point's interior; its interior does not
    found = matching(geo_client, f"st_relate(geography'{LINE}', location, 'F**0*****')")
    assert found == {"line-end"}


def test_distance_and_length_in_degrees(geo_client: TestClient) -> None:
    # from (1 1) to (4 5) is 5 degrees in the plane
    near = matching(geo_client, "geo.distance(location, geography'POINT (4 5)') le 5")
    assert "in-shell" in near
    assert "corner" not in near  # √41 > 5
    exact = matching(geo_client, "geo.distance(location, geography'POINT (4 5)') eq 5")
    assert exact == {"in-shell"}
    # to a line: the perpendicular foot on the segment (0 20)-(10 20) from (5 21) is 1 away
    assert matching(geo_client, f"geo.distance(location, geography'{LINE}') eq 1") == {"off-line"}
    # a point inside the polygon is at distance 0; outside, at the nearest edge
    assert matching(geo_client, f"geo.distance(location, geography'{SQUARE}') eq 0") == {
        "in-shell",
        "on-edge",
        "on-hole-edge",
        "corner",
    }
    # the hole is outside the polygon: its centre is 1 from the hole's edge
    assert matching(geo_client, f"geo.distance(location, geography'{SQUARE}') eq 1") == {
        "outside",
        "in-hole",
    }
    assert len(matching(geo_client, f"geo.length(geography'{LINE}') eq 20")) == len(PLACES)
    ordered = geo_client.get(
        f"{ROOT}/Locations",
        params={"$filter": "geo.distance(location, geography'POINT (0 0)') lt 2"},
    ).json()["value"]
    assert {o["@iot.id"] for o in ordered} == {"in-shell", "corner"}


def test_geospatial_filters_through_navigation(geo_client: TestClient) -> None:
    within = f"st_within(Locations/location, geography'{SQUARE}')"
    assert matching(geo_client, within, "Things") == {"in-shell"}
    history = f"st_within(Locations/location, geography'{SQUARE}')"
    assert matching(geo_client, history, "HistoricalLocations") == {"in-shell"}
    datastreams = geo_client.get(
        f"{ROOT}/Datastreams",
        params={"$filter": f"st_within(observedArea, geography'{SQUARE}')", "$expand": "Thing"},
    ).json()["value"]
    assert [d["Thing"]["@iot.id"] for d in datastreams] == ["in-shell"]
    observations = geo_client.get(
        f"{ROOT}/Observations",
        params={
            "$filter": f"st_intersects(FeatureOfInterest/feature, geography'{LINE}')",
            "$expand": "FeatureOfInterest($select=id)",
        },
    ).json()["value"]
    assert {o["FeatureOfInterest"]["@iot.id"] for o in observations} == {
        "line-middle",
        "line-vertex",
        "line-end",
    }
    sensors = matching(
        geo_client,
        "Datastreams/Thing/Locations/location eq geography'POINT (11 5)'",
        "Sensors",
    )
    assert sensors == {"aq-outside"}


def test_geometry_errors_are_400s(geo_client: TestClient) -> None:
    for expression, says in (
        ("st_within(location, geography'POLYGON ((0 0, 1 0, 1 1))')", "at least 4 points"),
        ("st_within(name, geography'POINT (1 2)')", "needs geometries"),
        ("st_within(location, geography'MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)))')", "not supported"),
        (f"st_crosses(geography'{LINE}', geography'{SQUARE}')", "must be a point"),
        ("st_relate(location, geography'POINT (1 2)', 'TTTTTTTTTTT')", "DE-9IM"),
    ):
        response = geo_client.get(f"{ROOT}/Locations", params={"$filter": expression})
        assert response.status_code == 400, (expression, response.text)
        assert says in response.json()["detail"], (expression, response.json()["detail"])
