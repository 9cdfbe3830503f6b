"""The SensorThings view through FROST's own Python client (``frost-sta-client``), as
a third party harvests it: list Things and Datastreams, expand and filter, and page
through every Observation by following nextLinks while readings keep arriving — no
Observation twice, none missed.  Against the API as deployed (``smartby api``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import frost_sta_client as fsc
import numpy as np
import psycopg
import pytest

from bench.api_storm import ApiProcess
from db.stream import notify_readings
from tests.api.conftest import SUMMARY_LINES, assert_quiet_log
from tests.api.sta_data import DATASTREAMS, THINGS, StaData, sta_database
from tests.fixtures.services import Services

FROST_DATABASE = "smartby_sta_frost"
#: furl, under the client, warns about its own API
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:furl")


@pytest.fixture(scope="module")
def frost_data(services: Services) -> StaData:
    return sta_database(services, FROST_DATABASE)


@pytest.fixture(scope="module")
def service(frost_data: StaData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    log = tmp_path_factory.mktemp("frost") / "api.log"
    api = ApiProcess(frost_data.url, log, api_rate_limit="1000000/minute")
    try:
        yield fsc.SensorThingsService(f"http://127.0.0.1:{api.port}/sta/v1.1")
    finally:
        api.stop()
    assert_quiet_log(api)


def test_things_and_datastreams(service: Any, frost_data: StaData) -> None:
    things = list(service.things().query().list())
    assert sorted(t.id for t in things) == [site for site, *_ in THINGS]
    assert {t.name for t in things} == {name for _, name, *_ in THINGS}
    datastreams = list(service.datastreams().query().list())
    assert [d.id for d in datastreams] == list(frost_data.series)
    assert {d.unit_of_measurement.symbol for d in datastreams} >= {"µg/m³"}
    one = service.datastreams().find(frost_data.series[0])
    assert one.name == f"{DATASTREAMS[0][0]} {DATASTREAMS[0][3]}"


def test_expand_and_filter(service: Any, frost_data: StaData) -> None:
    expanded = list(service.datastreams().query().expand("Thing,ObservedProperty,Sensor").list())
    assert {(d.thing.id, d.observed_property.id, d.sensor.id) for d in expanded} == {
        (site, metric, device) for device, _, site, metric in DATASTREAMS
    }
    late = list(
        service.observations()
        .query()
        .filter("phenomenonTime ge 2015-03-10T00:00:00Z and result lt 12")
        .list()
    )
    assert sorted(o.result for o in late) == [10.0, 11.0]
    at_thing = list(
        service.things().query().filter("Datastreams/ObservedProperty/id eq 'pm10'").list()
    )
    assert [t.id for t in at_thing] == ["thing-2"]
    located = list(
        service.locations()
        .query()
        .filter(
            "st_within(location, geography'POLYGON((-120 50, -110 50, -110 52, -120 52, -120 50))')"
        )
        .list()
    )
    assert [loc.id for loc in located] == ["thing-1"]


def test_a_harvest_while_readings_arrive_sees_each_once(service: Any, frost_data: StaData) -> None:
    """A writer commits readings newer than any stored, round the Datastreams, while the
    client pages through /Observations 7 at a time; afterwards, exactly the
    Observations up to where the harvest ended have been seen, each once."""
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        start = datetime(2015, 4, 1, tzinfo=UTC)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        with psycopg.connect(frost_data.url, autocommit=True) as conn:
            n = 0
            while not stop.is_set() and n < 400:
                series = frost_data.series[n % len(frost_data.series)]
                moment = start + timedelta(seconds=n)
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO readings (time, series_id, value, quality)"
                        " VALUES (%s, %s, %s, 1)",
                        (moment, series, float(n)),
                    )
                    notify_readings(
                        conn,
                        np.array([series], np.int32),
                        np.array([(moment - epoch) // timedelta(microseconds=1)], np.int64),
                    )
                written.append(n)
                n += 1
                time.sleep(0.005)

    writer = threading.Thread(target=write, name="writer", daemon=True)
    writer.start()
    while len(written) < 20:  # the harvest starts with writes under way
        time.sleep(0.01)
    harvested = [o.id for o in service.observations().query().top(7).list()]
    during = len(written)
    stop.set()
    writer.join(30)
    assert len(harvested) == len(set(harvested)), "an Observation came twice"
    series, micros = harvested[-1].split("-")
    last = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
    with psycopg.connect(frost_data.url) as conn:
        expected = [
            f"{sid}-{us}"
            for sid, us in conn.execute(
                "SELECT series_id, (extract(epoch FROM time) * 1000000)::int8 FROM readings"
                " WHERE quality <> 4 AND (time, series_id) <= (%s, %s)"
                " ORDER BY time, series_id",
                (last, int(series)),
            ).fetchall()
        ]
    assert harvested == expected, "the harvest missed or reordered Observations"
    assert len(harvested) > 12 + 20  # the seed and what was written before it began
    SUMMARY_LINES.append(
        f"frost-sta-client: harvested {len(harvested)} Observations in pages of 7 while "
        f"{during} readings were written, none twice, none missed"
    )
