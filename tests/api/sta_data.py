"""A small database shaped like the fixture of OGC's SensorThings test suite
(ets-sta10, Capability3Tests.createEntities), for the conformance checks and the
SensorThings v1.1 tests: two Things each with one Location, four Sensors each with
one Datastream, twelve Observations with results 1 to 12 on 2015-03-01 … 12 (three
per Datastream), both Things' sites as the two FeaturesOfInterest.  One more reading
is flagged FAIL (value 999 in the first Datastream), to show it left out by default.

The catalogue's metrics are all ObservedProperties here (migration 0003 seeds them),
so counts of ObservedProperties are the catalogue's, not the suite's three.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from db.migrate import migrate
from tests.fixtures.services import Services

STA_DATABASE = "smartby_sta_ets"

THINGS = (
    # id, name, lon, lat, registered
    ("thing-1", "thing 1", -117.05, 51.05, datetime(2015, 2, 1, tzinfo=UTC)),
    ("thing-2", "thing 2", -100.05, 50.05, datetime(2015, 2, 2, tzinfo=UTC)),
)
#: sensor (device) id, its kind, its thing, and the metric of its one Datastream; the
#: catalogue's first metric (energy) is among them, as the suite expects the first
#: ObservedProperty to have Datastreams
DATASTREAMS = (
    ("sensor-1", "air_quality", "thing-1", "pm25"),
    ("sensor-2", "air_quality", "thing-1", "no2"),
    ("sensor-3", "air_quality", "thing-2", "pm10"),
    ("sensor-4", "energy", "thing-2", "energy"),
)
#: the FAIL-flagged reading: Datastream 1 at noon on 2 March, 999 µg/m³
FAILED_AT = datetime(2015, 3, 2, 12, tzinfo=UTC)
FAILED_VALUE = 999.0


@dataclass(frozen=True)
class StaData:
    url: str
    series: tuple[int, ...]  # Datastream ids in the order of `DATASTREAMS`


def observation_time(number: int) -> datetime:
    """The phenomenon time of the Observation with result ``number`` (1 … 12)."""
    return datetime(2015, 3, number, tzinfo=UTC)


def seed(conn: psycopg.Connection) -> tuple[int, ...]:
    for site, name, lon, lat, registered in THINGS:
        conn.execute(
            "INSERT INTO sites (id, name, kind, municipality, lon, lat, properties, created_at)"
            " VALUES (%s, %s, 'urban_background', 'Narvik', %s, %s, %s::jsonb, %s)",
            (site, name, lon, lat, json.dumps({"reference": name}), registered),
        )
    series: list[int] = []
    for number, (device, kind, site, metric) in enumerate(DATASTREAMS, start=1):
        conn.execute(
            "INSERT INTO devices (id, site_id, kind, vendor, model) VALUES (%s, %s, %s,"
            " 'Acme', %s)",
            (device, site, kind, f"Model {number}"),
        )
        row = conn.execute(
            "INSERT INTO series (device_id, metric) VALUES (%s, %s) RETURNING id", (device, metric)
        ).fetchone()
        assert row is not None
        series.append(int(row[0]))
    for result in range(1, 13):
        conn.execute(
            "INSERT INTO readings (time, series_id, value, quality) VALUES (%s, %s, %s, 1)",
            (observation_time(result), series[(result - 1) // 3], float(result)),
        )
    conn.execute(
        "INSERT INTO readings (time, series_id, value, quality) VALUES (%s, %s, %s, 4)",
        (FAILED_AT, series[0], FAILED_VALUE),
    )
    return tuple(series)


def sta_database(services: Services, name: str = STA_DATABASE) -> StaData:
    """The database ``name``, migrated and seeded afresh."""
    services.cluster.ensure_database(name)
    url = services.cluster.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("TRUNCATE readings, series, devices, sites RESTART IDENTITY CASCADE")
        series = seed(conn)
    return StaData(url, series)
