"""SensorThings v1.1 beyond the basics, on the small suite-shaped database
(`tests.api.sta_data`): HistoricalLocations, association links ($ref), Datastream
time intervals in $filter and $orderby, the Data Array format, keyset nextLinks,
resultQuality as a DQ_Element with FAIL-flagged Observations left out unless
``include_failed=true``, the SensorML metadata of Sensors, Location and feature
properties and observedArea, and hostile inputs answered with problem+json."""

from __future__ import annotations

import warnings
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree as ET

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.sensorthings.model import QUALITY_CODE_LIST
from tests.api.sta_data import (
    FAILED_AT,
    FAILED_VALUE,
    THINGS,
    StaData,
    observation_time,
)
from tests.api.sta_requests import ROOT, follow, get, problem


def iso(number: int) -> str:
    return observation_time(number).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------- HistoricalLocations


def test_historical_locations_are_when_each_site_was_registered(sta_client: TestClient) -> None:
    history = follow(sta_client, "/HistoricalLocations")
    assert {h["@iot.id"]: h["time"] for h in history} == {
        site: registered.isoformat().replace("+00:00", "Z") for site, _, _, _, registered in THINGS
    }
    for site, *_ in THINGS:
        assert get(sta_client, f"/HistoricalLocations('{site}')/Thing")["@iot.id"] == site
        (location,) = get(sta_client, f"/HistoricalLocations('{site}')/Locations")["value"]
        assert location["@iot.id"] == site
        (mine,) = get(sta_client, f"/Things('{site}')/HistoricalLocations")["value"]
        assert mine["@iot.id"] == site
        (again,) = get(sta_client, f"/Locations('{site}')/HistoricalLocations")["value"]
        assert again == mine
    expanded = get(sta_client, "/Things('thing-1')", **{"$expand": "HistoricalLocations/Locations"})
    assert expanded["HistoricalLocations"][0]["Locations"][0]["@iot.id"] == "thing-1"


# ---------------------------------------------------------------------- $ref


def test_association_links_list_self_links_only(sta_client: TestClient, sta_data: StaData) -> None:
    refs = get(sta_client, "/Things('thing-1')/Datastreams/$ref")
    assert refs["value"] == [
        {"@iot.selfLink": f"http://testserver{ROOT}/Datastreams({sid})"}
        for sid in sta_data.series[:2]
    ]
    one = get(sta_client, f"/Datastreams({sta_data.series[0]})/Thing/$ref")
    assert one == {"@iot.selfLink": f"http://testserver{ROOT}/Things('thing-1')"}
    paged = get(sta_client, "/Observations/$ref", **{"$top": 5, "$count": "true"})
    assert paged["@iot.count"] == 12
    assert all(set(o) == {"@iot.selfLink"} for o in paged["value"])
    rest = follow(sta_client, paged["@iot.nextLink"])
    assert len(rest) == 7
    assert all(set(o) == {"@iot.selfLink"} for o in rest)
    for link in [o["@iot.selfLink"] for o in paged["value"]]:
        assert sta_client.get(link).status_code == 200
    assert problem(sta_client, "/Things/$ref", **{"$select": "name"})["parameter"] == "$select"
    problem(sta_client, "/Things('thing-1')/name/$ref", 404)
    problem(sta_client, "/Things('nowhere')/$ref", 404)


# ---------------------------------------------------------------------- Datastream times


def test_datastream_phenomenon_time_filters_as_an_interval(
    sta_client: TestClient, sta_data: StaData
) -> None:
    ds1, ds2, ds3, ds4 = sta_data.series

    def ids(expression: str) -> list[int]:
        return [d["@iot.id"] for d in follow(sta_client, "/Datastreams", **{"$filter": expression})]

    first = get(sta_client, f"/Datastreams({ds3})")
    assert first["phenomenonTime"] == f"{iso(7)}/{iso(9)}"
    assert first["resultTime"] == f"{iso(7)}/{iso(9)}"
    # after: the whole interval after the instant; before: the whole interval before
    assert ids("phenomenonTime gt 2015-03-06T12:00:00Z") == [ds3, ds4]
    assert ids("phenomenonTime lt 2015-03-06T12:00:00Z") == [ds1, ds2]
    assert ids("phenomenonTime ge 2015-03-07T00:00:00Z") == [ds3, ds4]
    assert ids("phenomenonTime le 2015-03-06T00:00:00Z") == [ds1, ds2]
    # an instant equals an interval that holds it (ends included)
    assert ids("phenomenonTime eq 2015-03-08T00:00:00Z") == [ds3]
    assert ids("phenomenonTime eq 2015-03-09T00:00:00Z") == [ds3]
    assert ids("phenomenonTime ne 2015-03-08T00:00:00Z") == [ds1, ds2, ds4]
    assert ids("2015-03-11T00:00:00Z eq resultTime") == [ds4]
    assert ids("year(phenomenonTime) eq 2015") == [ds1, ds2, ds3, ds4]
    newest_first = get(sta_client, "/Datastreams", **{"$orderby": "phenomenonTime desc"})
    assert [d["@iot.id"] for d in newest_first["value"]] == [ds4, ds3, ds2, ds1]
    by_result = get(sta_client, "/Datastreams", **{"$orderby": "resultTime asc"})
    assert [d["@iot.id"] for d in by_result["value"]] == [ds1, ds2, ds3, ds4]
    # and through navigation
    things = follow(
        sta_client, "/Things", **{"$filter": "Datastreams/phenomenonTime gt 2015-03-09T12:00:00Z"}
    )
    assert [t["@iot.id"] for t in things] == ["thing-2"]


# ---------------------------------------------------------------------- dataArray


def test_data_array_groups_observations_per_datastream(
    sta_client: TestClient, sta_data: StaData
) -> None:
    page = get(sta_client, "/Observations", **{"$resultFormat": "dataArray", "$count": "true"})
    assert page["@iot.count"] == 12
    assert [g["Datastream@iot.navigationLink"] for g in page["value"]] == [
        f"http://testserver{ROOT}/Datastreams({sid})" for sid in sta_data.series
    ]
    for group in page["value"]:
        assert group["components"] == [
            "id",
            "phenomenonTime",
            "resultTime",
            "result",
            "resultQuality",
            "parameters",
        ]
        assert group["dataArray@iot.count"] == len(group["dataArray"]) == 3
        for row in group["dataArray"]:
            assert len(row) == len(group["components"])
            number = int(row[3])
            assert row[1] == row[2] == iso(number)
            assert row[4]["result"]["value"] == 1
    selected = get(
        sta_client,
        f"/Datastreams({sta_data.series[1]})/Observations",
        **{"$resultFormat": "dataArray", "$select": "result,phenomenonTime", "$top": 2},
    )
    (group,) = selected["value"]
    assert group["components"] == ["result", "phenomenonTime"]
    assert group["dataArray"] == [[4.0, iso(4)], [5.0, iso(5)]]
    rest = get(sta_client, selected["@iot.nextLink"])
    assert rest["value"][0]["dataArray"] == [[6.0, iso(6)]]
    for bad, option in (
        ({"$resultFormat": "dataArray", "$expand": "Datastream"}, "$expand"),
        ({"$resultFormat": "csv"}, "$resultFormat"),
    ):
        assert problem(sta_client, "/Observations", **bad)["parameter"] == option
    document = problem(sta_client, "/Things", **{"$resultFormat": "dataArray"})
    assert "Observations" in document["detail"]


# ---------------------------------------------------------------------- keyset paging


def test_next_links_continue_by_keyset_in_both_directions(sta_client: TestClient) -> None:
    first = get(sta_client, "/Observations", **{"$top": 5})
    query = parse_qs(urlsplit(first["@iot.nextLink"]).query)
    assert "$skip" not in query
    assert query["$top"] == ["5"]
    ascending = follow(sta_client, "/Observations", **{"$top": 5})
    assert [o["result"] for o in ascending] == [float(n) for n in range(1, 13)]
    descending = follow(
        sta_client, "/Observations", **{"$top": 5, "$orderby": "phenomenonTime desc"}
    )
    assert [o["result"] for o in descending] == [float(n) for n in range(12, 0, -1)]
    # the client's own $skip still counts, and the server's link does not skip again
    skipped = follow(sta_client, "/Observations", **{"$top": 4, "$skip": 3})
    assert [o["result"] for o in skipped] == [float(n) for n in range(4, 13)]
    # another order pages by $skip
    by_result = get(sta_client, "/Observations", **{"$top": 5, "$orderby": "result desc"})
    assert "$skip=5" in by_result["@iot.nextLink"]
    for token, says in (
        ("nonsense", "not a position"),
        ("d1425168000000000.1", "other sort direction"),
    ):
        assert says in problem(sta_client, "/Observations", **{"$skiptoken": token})["detail"]
    assert problem(sta_client, "/Things", **{"$skiptoken": "a1.1"})["parameter"] == "$skiptoken"


# ---------------------------------------------------------------------- quality


def test_failed_observations_are_left_out_unless_asked_for(
    sta_client: TestClient, sta_data: StaData
) -> None:
    ds1 = sta_data.series[0]
    default = get(sta_client, f"/Datastreams({ds1})/Observations", **{"$count": "true"})
    assert default["@iot.count"] == 3
    assert FAILED_VALUE not in [o["result"] for o in default["value"]]
    everything = get(
        sta_client,
        f"/Datastreams({ds1})/Observations",
        **{"$count": "true", "include_failed": "true"},
    )
    assert everything["@iot.count"] == 4
    (failed,) = [o for o in everything["value"] if o["result"] == FAILED_VALUE]
    assert failed["phenomenonTime"] == FAILED_AT.isoformat().replace("+00:00", "Z")
    assert failed["resultQuality"]["result"] == {
        "value": 4,
        "name": "fail",
        "code": f"{QUALITY_CODE_LIST}4/",
        "codeList": QUALITY_CODE_LIST,
    }
    assert failed["resultQuality"]["measure"]["nameOfMeasure"] == "QARTOD primary flag"
    # the flag travels in the nextLink, in expansions and in counts
    paged = get(sta_client, "/Observations", **{"$top": 2, "include_failed": "true"})
    assert "include_failed=true" in paged["@iot.nextLink"]
    assert len(follow(sta_client, paged["@iot.nextLink"])) == 11
    expanded = get(
        sta_client,
        f"/Datastreams({ds1})",
        **{"$expand": "Observations($count=true)", "include_failed": "true"},
    )
    assert expanded["Observations@iot.count"] == 4
    assert (
        get(sta_client, f"/Datastreams({ds1})", **{"$expand": "Observations"})["Observations"]
        == default["value"]
    )
    # addressed by its id, a failed Observation is there
    assert get(sta_client, failed["@iot.selfLink"])["result"] == FAILED_VALUE
    # and filtering on the flag itself works through the DQ_Element
    flagged = follow(
        sta_client,
        "/Observations",
        **{"$filter": "resultQuality/result/value eq 4", "include_failed": "true"},
    )
    assert [o["result"] for o in flagged] == [FAILED_VALUE]
    for value in ("yes", "1"):
        assert problem(sta_client, "/Observations", include_failed=value)["parameter"] == (
            "include_failed"
        )


# ---------------------------------------------------------------------- entity details


def test_sensor_metadata_is_a_sensorml_document(sta_client: TestClient) -> None:
    sensor = get(sta_client, "/Sensors('sensor-1')")
    assert sensor["encodingType"] == "http://www.opengis.net/doc/IS/SensorML/2.0"
    response = sta_client.get(sensor["metadata"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert response.headers["x-license"] == "NLOD-2.0"
    root = ET.fromstring(response.content)  # noqa: S314 (our own document)
    sml, swe, gml = (
        "{http://www.opengis.net/sensorml/2.0}",
        "{http://www.opengis.net/swe/2.0}",
        "{http://www.opengis.net/gml/3.2}",
    )
    assert root.tag == f"{sml}PhysicalComponent"
    assert root.findtext(f"{gml}name") == "sensor-1"
    assert root.findtext(f"{gml}identifier") == sensor["@iot.selfLink"]
    values = [t.findtext(f"{sml}value") for t in root.iter(f"{sml}Term")]
    assert values == ["Acme", "Model 1", "air quality sensor"]
    (output,) = root.iter(f"{sml}output")
    assert output.get("name") == "pm25"
    assert output.find(f"{swe}Quantity/{swe}uom").get("code") == "ug/m3"  # type: ignore[union-attr]
    assert root.findtext(f"{sml}position/{gml}Point/{gml}pos") == "51.05 -117.05"
    assert sta_client.get(f"{ROOT}/sensorml/nobody").status_code == 404
    assert sta_client.get(f"{ROOT}/sensorml/bad%20id").status_code == 404


def test_places_carry_properties_and_datastreams_their_observed_area(
    sta_client: TestClient, sta_data: StaData
) -> None:
    location = get(sta_client, "/Locations('thing-2')")
    assert location["properties"] == {
        "reference": "thing 2",
        "site": "thing-2",
        "kind": "urban_background",
        "municipality": "Narvik",
    }
    feature = get(sta_client, "/FeaturesOfInterest('thing-2')")
    assert feature["properties"] == location["properties"]
    datastream = get(sta_client, f"/Datastreams({sta_data.series[3]})")
    assert datastream["observedArea"] == {"type": "Point", "coordinates": [-100.05, 50.05]}
    assert datastream["observedArea"] == location["location"]
    assert (
        get(sta_client, f"/Datastreams({sta_data.series[3]})/observedArea/$value")
        == (location["location"])
    )
    reference = follow(sta_client, "/Locations", **{"$filter": "properties/reference eq 'thing 1'"})
    assert [loc["@iot.id"] for loc in reference] == ["thing-1"]


# ---------------------------------------------------------------------- hostile inputs


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"$filter": "(" * 150 + "name eq 'x'" + ")" * 150}, "$filter"),
        ({"$filter": "name eq 'a\x00b'"}, "$filter"),
        ({"$orderby": "name\x00"}, "$orderby"),
    ],
)
def test_inputs_that_used_to_crash_are_400s(
    sta_client: TestClient, params: dict[str, str], parameter: str
) -> None:
    document = problem(sta_client, "/Things", **params)
    assert document["parameter"] == parameter


def test_a_url_over_the_limit_is_414_naming_it(sta_client: TestClient) -> None:
    response = sta_client.get(ROOT + "/Things", params={"$filter": "name eq '" + "x" * 9000 + "'"})
    assert response.status_code == 414
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["limit"] == 8192
    assert "8192 bytes" in response.json()["detail"]
