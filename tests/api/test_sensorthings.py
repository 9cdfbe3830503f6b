"""The SensorThings API v1.1 view on the simulated database: every entity set and
navigation path, ids that round-trip through @iot.selfLink, paging with $top, $skip,
$count and @iot.nextLink to the end, $orderby, $select, $expand, $filter (including
time ranges on Observations), errors as problem+json, and the traffic rule (hourly
aggregates only)."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from tests.api.sta_requests import ROOT, follow, get, problem
from tests.fixtures.simulated import SimulatedData


@pytest.fixture(scope="module")
def sta(client: TestClient) -> TestClient:
    """The app on the simulated database (api.app mounts the router at /sta/v1.1)."""
    return client


def scalar(url: str, query: str, *args: Any) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, args).fetchone()
    assert row is not None
    return row[0]


def series_id(url: str, device: str, metric: str) -> int:
    return int(
        scalar(url, "SELECT id FROM series WHERE device_id = %s AND metric = %s", device, metric)
    )


# ---------------------------------------------------------------------- service root


def test_service_root_lists_the_entity_sets_and_conformance(sta: TestClient) -> None:
    document = get(sta, "")
    names = {entry["name"] for entry in document["value"]}
    assert names == {
        "Things",
        "Locations",
        "HistoricalLocations",
        "Datastreams",
        "Sensors",
        "ObservedProperties",
        "Observations",
        "FeaturesOfInterest",
    }
    for entry in document["value"]:
        assert urlsplit(entry["url"]).path == f"{ROOT}/{entry['name']}"
        assert sta.get(entry["url"], params={"$top": 1}).status_code == 200
    assert (
        "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data"
        in document["serverSettings"]["conformance"]
    )
    assert get(sta, "/") == document


def test_responses_carry_the_licence(sta: TestClient) -> None:
    response = sta.get(ROOT + "/Things", params={"$top": 1})
    assert response.headers["x-license"] == "NLOD-2.0"
    assert "etag" in response.headers


# ---------------------------------------------------------------------- entities


def test_every_entity_set_has_ids_that_round_trip_through_self_links(sta: TestClient) -> None:
    for name in (
        "Things",
        "Locations",
        "HistoricalLocations",
        "Sensors",
        "ObservedProperties",
        "Datastreams",
        "Observations",
        "FeaturesOfInterest",
    ):
        page = get(sta, f"/{name}", **{"$top": 3})
        assert len(page["value"]) == 3, name
        for entity in page["value"]:
            again = get(sta, entity["@iot.selfLink"])
            assert again["@iot.id"] == entity["@iot.id"], name
            assert again == entity, name
            for key, link in entity.items():
                if key.endswith("@iot.navigationLink"):
                    assert sta.get(link).status_code == 200, link


def test_thing_and_location_are_the_site(sta: TestClient) -> None:
    thing = get(sta, "/Things('narvik-sentrum')")
    assert thing["name"] == "Narvik sentrum, Kongens gate"
    assert thing["properties"]["kind"] == "roadside"
    assert thing["properties"]["municipality"] == "Narvik"
    assert thing["properties"]["road"] == "E6"
    locations = get(sta, "/Things('narvik-sentrum')/Locations")["value"]
    assert len(locations) == 1
    (location,) = locations
    assert location["@iot.id"] == "narvik-sentrum"
    assert location["encodingType"] == "application/geo+json"
    assert location["location"] == {"type": "Point", "coordinates": [17.429, 68.44]}
    things = get(sta, "/Locations('narvik-sentrum')/Things")["value"]
    assert [t["@iot.id"] for t in things] == ["narvik-sentrum"]
    feature = get(sta, "/FeaturesOfInterest('narvik-sentrum')")
    assert feature["feature"] == location["location"]


def test_sensor_shows_public_fields_only(sta: TestClient) -> None:
    sensor = get(sta, "/Sensors('aq-sentrum')")
    assert sensor["encodingType"] == "http://www.opengis.net/doc/IS/SensorML/2.0"
    assert sensor["metadata"].endswith("/sensorml/aq-sentrum")
    assert sensor["properties"]["kind"] == "air_quality"
    assert "secret" not in str(sensor).lower()
    assert "calibration" not in str(sensor)


def test_observed_property_is_the_metric(sta: TestClient) -> None:
    pm25 = get(sta, "/ObservedProperties('pm25')")
    assert pm25["name"] == "PM2.5"
    assert pm25["definition"] == "http://dd.eionet.europa.eu/vocabulary/aq/pollutant/6001"
    assert pm25["description"].startswith("Mass concentration")


def test_datastream_navigation(sta: TestClient, simulated: SimulatedData) -> None:
    sid = series_id(simulated.url, "aq-sentrum", "pm25")
    for key in (str(sid), f"'{sid}'"):
        datastream = get(sta, f"/Datastreams({key})")
        assert datastream["@iot.id"] == sid
    assert datastream["name"] == "aq-sentrum pm25"
    assert datastream["unitOfMeasurement"] == {
        "name": "microgram per cubic metre",
        "symbol": "µg/m³",
        "definition": "http://qudt.org/vocab/unit/MicroGM-PER-M3",
    }
    assert datastream["observationType"].endswith("OM_Measurement")
    start, end = datastream["phenomenonTime"].split("/")
    assert start < end
    assert get(sta, f"/Datastreams({sid})/Thing")["@iot.id"] == "narvik-sentrum"
    assert get(sta, f"/Datastreams({sid})/Sensor")["@iot.id"] == "aq-sentrum"
    assert get(sta, f"/Datastreams({sid})/ObservedProperty")["@iot.id"] == "pm25"
    observations = get(sta, f"/Datastreams({sid})/Observations", **{"$top": 5})["value"]
    assert len(observations) == 5
    assert all(o["@iot.id"].startswith(f"{sid}-") for o in observations)
    # and back again, two levels deep
    (first,) = observations[:1]
    assert get(sta, f"/Observations('{first['@iot.id']}')/Datastream")["@iot.id"] == sid
    assert (
        get(sta, f"/Observations('{first['@iot.id']}')/Datastream/Thing")["@iot.id"]
        == "narvik-sentrum"
    )
    assert (
        get(sta, f"/Observations('{first['@iot.id']}')/FeatureOfInterest")["@iot.id"]
        == "narvik-sentrum"
    )
    assert get(sta, f"/Datastreams({sid})/Thing/Locations")["value"][0]["@iot.id"] == (
        "narvik-sentrum"
    )


def test_collections_under_an_entity(sta: TestClient, simulated: SimulatedData) -> None:
    expected = int(
        scalar(
            simulated.url,
            "SELECT count(*) FROM series s JOIN devices d ON d.id = s.device_id"
            " WHERE d.site_id = 'narvik-sentrum'",
        )
    )
    datastreams = follow(sta, "/Things('narvik-sentrum')/Datastreams")
    assert len(datastreams) == expected > 0
    assert {d["name"].split()[0] for d in datastreams} == {"aq-sentrum"}
    from_sensor = follow(sta, "/Sensors('aq-sentrum')/Datastreams")
    assert [d["@iot.id"] for d in from_sensor] == [d["@iot.id"] for d in datastreams]
    pm25 = follow(sta, "/ObservedProperties('pm25')/Datastreams")
    assert pm25
    assert all(d["name"].endswith(" pm25") for d in pm25)
    at_site = get(sta, "/FeaturesOfInterest('narvik-sentrum')/Observations", **{"$top": 20})
    ids = {d["@iot.id"] for d in datastreams}
    assert all(int(o["@iot.id"].split("-")[0]) in ids for o in at_site["value"])


def test_entity_properties_and_values(sta: TestClient) -> None:
    assert get(sta, "/Things('narvik-sentrum')/name") == {"name": "Narvik sentrum, Kongens gate"}
    response = sta.get(ROOT + "/Things('narvik-sentrum')/name/$value")
    assert response.status_code == 200
    assert response.text == "Narvik sentrum, Kongens gate"


def test_unknown_things_are_404(sta: TestClient) -> None:
    for url in (
        "/Things('nowhere')",
        "/Things('nowhere')/Datastreams",
        "/Datastreams(999999)",
        "/Datastreams(999999)/Observations",
        "/Datastreams(abc)",
        "/Observations('1-0')",
        "/Observations('nonsense')",
        "/Unicorns",
        "/Things('narvik-sentrum')/Unicorns",
        "/Things/Datastreams",
    ):
        problem(sta, url, 404)


# ---------------------------------------------------------------------- paging


def test_top_skip_count_and_next_links_to_the_end(
    sta: TestClient, simulated: SimulatedData
) -> None:
    total = int(scalar(simulated.url, "SELECT count(*) FROM series"))
    first = get(sta, "/Datastreams", **{"$top": 7, "$count": "true"})
    assert first["@iot.count"] == total
    assert len(first["value"]) == 7
    assert "$skip=7" in first["@iot.nextLink"]
    assert "$top=7" in first["@iot.nextLink"]
    everything = follow(sta, "/Datastreams", **{"$top": 7, "$count": "true"})
    ids = [d["@iot.id"] for d in everything]
    assert ids == sorted(ids)
    assert len(set(ids)) == total
    skipped = get(sta, "/Datastreams", **{"$skip": total - 2})
    assert [d["@iot.id"] for d in skipped["value"]] == ids[-2:]
    assert "@iot.nextLink" not in skipped
    default = get(sta, "/Datastreams")
    assert len(default["value"]) == min(total, 100)
    counted = get(sta, "/Datastreams", **{"$top": 0, "$count": "true"})
    assert counted["value"] == []
    assert counted["@iot.count"] == total
    assert "@iot.nextLink" not in counted


def test_observations_of_a_datastream_page_to_the_end(
    sta: TestClient, simulated: SimulatedData
) -> None:
    sid = series_id(simulated.url, "aq-sentrum", "pm25")
    start = datetime.fromtimestamp(simulated.end, UTC) - timedelta(hours=3)
    expected = int(
        scalar(
            simulated.url,
            "SELECT count(*) FROM readings WHERE series_id = %s AND time >= %s",
            sid,
            start,
        )
    )
    time_filter = f"phenomenonTime ge {start.isoformat().replace('+00:00', 'Z')}"
    observations = follow(
        sta,
        f"/Datastreams({sid})/Observations",
        **{"$filter": time_filter, "$top": 50, "$count": "true"},
    )
    assert len(observations) == expected > 100
    times = [o["phenomenonTime"] for o in observations]
    assert times == sorted(times)  # oldest first by default
    assert len({o["@iot.id"] for o in observations}) == expected


def test_top_beyond_the_limit_gets_server_driven_pages(sta: TestClient) -> None:
    page = get(sta, "/Observations", **{"$top": 25000, "$select": "id"})
    assert len(page["value"]) == 10000
    assert "$top=10000" in page["@iot.nextLink"]
    assert "$skiptoken=" in page["@iot.nextLink"]
    assert get(sta, "/Things", **{"$top": 10000})["value"]
    for option, value in (
        ("$skip", "-1"),
        ("$skip", "99999999999999999999"),
        ("$top", "x"),
        ("$top", "²"),
        ("$count", "yes"),
    ):
        assert problem(sta, "/Things", **{option: value})["parameter"] == option


# ---------------------------------------------------------------------- $orderby, $select


def test_orderby(sta: TestClient) -> None:
    names = [t["name"] for t in get(sta, "/Things", **{"$orderby": "name desc"})["value"]]
    assert names == sorted(names, reverse=True)
    datastreams = get(sta, "/Datastreams", **{"$orderby": "name asc,id desc", "$top": 200})
    listed = [d["name"] for d in datastreams["value"]]
    assert listed == sorted(listed)
    assert problem(sta, "/Things", **{"$orderby": "colour"})["parameter"] == "$orderby"
    assert problem(sta, "/Things", **{"$orderby": "name sideways"})["parameter"] == "$orderby"


def test_orderby_result_on_observations(sta: TestClient, simulated: SimulatedData) -> None:
    sid = series_id(simulated.url, "aq-sentrum", "pm25")
    page = get(sta, f"/Datastreams({sid})/Observations", **{"$orderby": "result desc", "$top": 20})
    results = [o["result"] for o in page["value"]]
    top = scalar(simulated.url, "SELECT max(value) FROM readings WHERE series_id = %s", sid)
    assert results == sorted(results, reverse=True)
    assert results[0] == top


def test_select(sta: TestClient) -> None:
    page = get(sta, "/Things", **{"$select": "name,id", "$top": 2})
    for thing in page["value"]:
        assert set(thing) == {"@iot.id", "name"}
    page = get(sta, "/Datastreams", **{"$select": "unitOfMeasurement,Thing", "$top": 1})
    (datastream,) = page["value"]
    assert set(datastream) == {"unitOfMeasurement", "Thing@iot.navigationLink"}
    assert problem(sta, "/Things", **{"$select": "colour"})["parameter"] == "$select"


# ---------------------------------------------------------------------- $expand


def test_expand(sta: TestClient, simulated: SimulatedData) -> None:
    thing = get(
        sta,
        "/Things('narvik-sentrum')",
        **{"$expand": "Datastreams($select=name;$top=2;$count=true),Locations"},
    )
    assert len(thing["Datastreams"]) == 2
    assert all(set(d) == {"name"} for d in thing["Datastreams"])
    total = thing["Datastreams@iot.count"]
    assert total > 2
    rest = follow(sta, thing["Datastreams@iot.nextLink"])
    assert len(rest) == total - 2
    assert [loc["@iot.id"] for loc in thing["Locations"]] == ["narvik-sentrum"]

    page = get(
        sta,
        "/Datastreams",
        **{
            "$top": 20,
            "$expand": "Thing,Sensor,ObservedProperty,Observations($top=3)",
        },
    )
    for datastream in page["value"]:
        sensor = datastream["Sensor"]["@iot.id"]
        assert datastream["name"] == f"{sensor} {datastream['ObservedProperty']['@iot.id']}"
        assert datastream["Thing"]["@iot.id"] == datastream["properties"]["site"]
        assert len(datastream["Observations"]) == 3
        for observation in datastream["Observations"]:
            assert observation["@iot.id"].startswith(f"{datastream['@iot.id']}-")

    observations = get(
        sta, "/Observations", **{"$top": 5, "$expand": "Datastream($select=name),FeatureOfInterest"}
    )["value"]
    for observation in observations:
        assert observation["Datastream"]["name"]
        assert observation["FeatureOfInterest"]["encodingType"] == "application/geo+json"

    nested = get(
        sta,
        "/Things('narvik-sentrum')",
        **{"$expand": "Datastreams/ObservedProperty,Datastreams($top=1)"},
    )
    assert "ObservedProperty" in nested["Datastreams"][0]
    deep = get(
        sta, "/Things('narvik-sentrum')", **{"$expand": "Datastreams($top=1;$expand=Sensor)"}
    )
    assert deep["Datastreams"][0]["Sensor"]["@iot.id"] == "aq-sentrum"
    assert problem(sta, "/Things", **{"$expand": "Unicorns"})["parameter"] == "$expand"


# ---------------------------------------------------------------------- $filter


def test_filter_on_own_and_json_properties(sta: TestClient) -> None:
    roadside = follow(sta, "/Things", **{"$filter": "properties/kind eq 'roadside'"})
    assert roadside
    assert all(t["properties"]["kind"] == "roadside" for t in roadside)
    named = get(sta, "/Things", **{"$filter": "name eq 'Narvik sentrum, Kongens gate'"})
    assert [t["@iot.id"] for t in named["value"]] == ["narvik-sentrum"]
    starts = follow(
        sta, "/Sensors", **{"$filter": "startswith(name, 'aq-') and not endswith(name, 'sentrum')"}
    )
    assert starts
    assert all(s["name"].startswith("aq-") for s in starts)
    assert "aq-sentrum" not in {s["name"] for s in starts}
    either = follow(sta, "/ObservedProperties", **{"$filter": "id eq 'pm25' or id eq 'no2'"})
    assert sorted(o["@iot.id"] for o in either) == ["no2", "pm25"]
    contained = follow(sta, "/ObservedProperties", **{"$filter": "substringof('passing', name)"})
    assert sorted(o["@iot.id"] for o in contained) == ["heavy_vehicle_count", "vehicle_count"]
    lowered = follow(sta, "/ObservedProperties", **{"$filter": "contains(tolower(name), 'ozone')"})
    assert [o["@iot.id"] for o in lowered] == ["o3"]
    bounded = follow(sta, "/ObservedProperties", **{"$filter": "properties/maxValue le 1000"})
    assert {o["@iot.id"] for o in bounded} >= {"pm25", "o3", "temperature"}
    assert "pm10" not in {o["@iot.id"] for o in bounded}


def test_filter_through_navigation(sta: TestClient) -> None:
    pm25 = follow(sta, "/Datastreams", **{"$filter": "ObservedProperty/name eq 'PM2.5'"})
    assert pm25
    assert all(d["name"].endswith(" pm25") for d in pm25)
    at_site = follow(
        sta,
        "/Datastreams",
        **{"$filter": "Thing/name eq 'Narvik sentrum, Kongens gate' and Sensor/id eq 'aq-sentrum'"},
    )
    assert at_site
    assert all(d["properties"]["site"] == "narvik-sentrum" for d in at_site)
    # to-many: Things with any Datastream of PM2.5
    things = follow(sta, "/Things", **{"$filter": "Datastreams/ObservedProperty/id eq 'pm25'"})
    assert {t["@iot.id"] for t in things} == {d["properties"]["site"] for d in pm25}


def test_filter_observations_by_time_range(sta: TestClient, simulated: SimulatedData) -> None:
    sid = series_id(simulated.url, "aq-sentrum", "no2")
    end = datetime.fromtimestamp(simulated.end, UTC) - timedelta(hours=5)
    start = end - timedelta(hours=1)
    low, high = (t.isoformat().replace("+00:00", "Z") for t in (start, end))
    expected = int(
        scalar(
            simulated.url,
            "SELECT count(*) FROM readings WHERE series_id = %s AND time >= %s AND time < %s",
            sid,
            start,
            end,
        )
    )
    window = f"phenomenonTime ge {low} and phenomenonTime lt {high}"
    via_datastream = follow(
        sta, f"/Datastreams({sid})/Observations", **{"$filter": window, "$top": 1000}
    )
    assert len(via_datastream) == expected > 0
    assert all(low <= o["phenomenonTime"] < high for o in via_datastream)
    everywhere = follow(
        sta,
        "/Observations",
        **{"$filter": f"Datastream/id eq {sid} and {window}", "$top": 1000},
    )
    assert [o["@iot.id"] for o in everywhere] == [o["@iot.id"] for o in via_datastream]
    by_name = get(
        sta,
        "/Observations",
        **{
            "$filter": f"Datastream/ObservedProperty/id eq 'no2' and {window}"
            " and result gt 0 and resultQuality/result/value le 3",
            "$count": "true",
            "$top": 5,
        },
    )
    assert by_name["@iot.count"] >= expected
    assert all(
        o["result"] > 0 and o["resultQuality"]["result"]["value"] <= 3 for o in by_name["value"]
    )


def test_filter_errors_are_400_naming_what_is_wrong(sta: TestClient) -> None:
    cases = {
        "name eq": "at the end",
        "name eq 'x": "not closed",
        "colour eq 'red'": "colour",
        "name eq 5 and (": "at the end",
        "startswith(name)": "startswith",
        "result gt true": "cannot compare",
        "name gt null": "null",
        "Thing eq 'x'": "navigation",
        "name eq 'a' eq 'b'": "chain",
        "frobnicate(name)": "frobnicate",
    }
    for expression, says in cases.items():
        url = "/Datastreams" if "result" not in expression else "/Observations"
        document = problem(sta, url, **{"$filter": expression})
        assert document["parameter"] == "$filter", expression
        assert says in document["detail"], (expression, document["detail"])
    assert problem(sta, "/Things", **{"$unknown": "1"})["parameter"] == "$unknown"


# ---------------------------------------------------------------------- privacy


def test_traffic_observations_are_hourly_aggregates(
    sta: TestClient, simulated: SimulatedData
) -> None:
    sid = series_id(simulated.url, "tc-e6-ornes", "vehicle_count")
    datastream = get(sta, f"/Datastreams({sid})")
    assert "hourly" in datastream["description"]
    assert datastream["properties"]["aggregation"] == "PT1H sum"
    observations = follow(sta, f"/Datastreams({sid})/Observations", **{"$top": 1000})
    raw = int(scalar(simulated.url, "SELECT count(*) FROM readings WHERE series_id = %s", sid))
    assert 0 < len(observations) < raw
    with psycopg.connect(simulated.url) as conn:
        sums = dict(
            conn.execute(
                "SELECT bucket, sum FROM rollups WHERE series_id = %s AND resolution = '1h'",
                (sid,),
            ).fetchall()
        )
    for observation in observations:
        start, end = observation["phenomenonTime"].split("/")
        begin = datetime.fromisoformat(start)
        assert datetime.fromisoformat(end) - begin == timedelta(hours=1)
        assert observation["result"] == sums[begin]
        assert observation["resultQuality"] is None
        assert observation["parameters"]["aggregation"] == "sum"
    speed = series_id(simulated.url, "tc-e6-ornes", "speed")
    (mean,) = get(sta, f"/Datastreams({speed})/Observations", **{"$top": 1})["value"]
    assert mean["parameters"]["aggregation"] == "mean"
    # and not through /Observations either
    anywhere = get(sta, "/Observations", **{"$filter": f"Datastream/id eq {sid}", "$top": 1000})[
        "value"
    ]
    assert all("/" in o["phenomenonTime"] for o in anywhere)


def test_expand_with_filter_orderby_and_count(sta: TestClient, simulated: SimulatedData) -> None:
    sid = series_id(simulated.url, "aq-sentrum", "pm25")
    datastream = get(
        sta,
        f"/Datastreams({sid})",
        **{
            "$expand": "Observations($filter=result ge 0 and resultQuality/result/value eq 1;"
            "$orderby=result desc;$top=4;$count=true;$select=result,resultQuality)"
        },
    )
    observations = datastream["Observations"]
    assert len(observations) == 4
    results = [o["result"] for o in observations]
    assert results == sorted(results, reverse=True)
    assert all(o["resultQuality"]["result"]["value"] == 1 for o in observations)
    good = int(
        scalar(
            simulated.url,
            "SELECT count(*) FROM readings WHERE series_id = %s AND value >= 0 AND quality = 1",
            sid,
        )
    )
    assert datastream["Observations@iot.count"] == good
    assert "$skip=4" in datastream["Observations@iot.nextLink"]
    feature = get(
        sta,
        "/FeaturesOfInterest('narvik-sentrum')",
        **{"$expand": "Observations($top=2;$expand=Datastream($select=name))"},
    )
    assert len(feature["Observations"]) == 2
    assert all(o["Datastream"]["name"].startswith("aq-sentrum ") for o in feature["Observations"])


def test_odd_paths_never_fail_the_server(sta: TestClient) -> None:
    for path in (
        "/Things('",
        "/Things(''')",
        "/Things('a'/'b')",
        "/Things()",
        "/Datastreams(1.5)",
        "/Datastreams(-1)",
        "/Observations('1-99999999999999999999')",
        "/Observations('1-9999999999999999999')",
        "/Things('narvik-sentrum')/name/$value/x",
        "/Things('narvik-sentrum')(1)",
        "/$metadata",
        "/Things%00",
    ):
        response = sta.get(ROOT + path)
        assert response.status_code in (400, 404), (path, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


def test_a_data_array_page_is_the_same_page_regrouped(
    sta: TestClient, simulated: SimulatedData
) -> None:
    """$resultFormat=dataArray (written by PostgreSQL) holds exactly the Observations
    of the plain page, each as its components' values, grouped per Datastream in the
    order of its first Observation, with the same next page: for readings and for
    hourly aggregates (an interval, parameters, no quality), several Datastreams on a
    page, all components or some ($select, `id` and `@iot.id` alike)."""
    traffic = series_id(simulated.url, "tc-e6-ornes", "vehicle_count")
    pm25 = series_id(simulated.url, "aq-ankenes", "pm25")
    query = {
        "$filter": f"Datastream/id eq {traffic} or Datastream/id eq {pm25}",
        "$orderby": "phenomenonTime desc",
        "$top": 50,
    }
    plain = get(sta, "/Observations", **query)
    observations = plain["value"]
    assert {o["Datastream@iot.navigationLink"] for o in observations} == {
        f"http://testserver{ROOT}/Observations('{o['@iot.id']}')/Datastream" for o in observations
    }
    for select, components in (
        (None, ["id", "phenomenonTime", "resultTime", "result", "resultQuality", "parameters"]),
        ("result,@iot.id,phenomenonTime", ["result", "id", "phenomenonTime"]),
        ("id,parameters", ["id", "parameters"]),
    ):
        options = {**query, "$resultFormat": "dataArray"}
        if select is not None:
            options["$select"] = select
        arrays = get(sta, "/Observations", **options)
        expected: dict[str, list[list[Any]]] = {}
        for o in observations:
            datastream = f"http://testserver{ROOT}/Datastreams({o['@iot.id'].split('-')[0]})"
            row = [o["@iot.id"] if name == "id" else o[name] for name in components]
            expected.setdefault(datastream, []).append(row)
        assert len(expected) == 2  # both Datastreams on the page
        assert arrays["value"] == [
            {
                "Datastream@iot.navigationLink": datastream,
                "components": components,
                "dataArray@iot.count": len(rows),
                "dataArray": rows,
            }
            for datastream, rows in expected.items()
        ]
        tokens = [
            urlsplit(page["@iot.nextLink"]).query.split("$skiptoken=")[1].split("&")[0]
            for page in (plain, arrays)
        ]
        assert tokens[0]
        assert tokens[0] == tokens[1]
