"""The live stream, /v1/stream: committed readings (and AQI hours) reach Server-Sent
Events clients by their filters, FAIL-flagged ones only when asked for, traffic
never; a client resumes with Last-Event-ID; the number of clients and each client's
queue are bounded (503 beyond, a slow client dropped); bad parameters are 400s."""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import psycopg
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.stream import AqiHour, Reading, StreamHub
from core.settings import Settings
from db.stream import notify_aqi_day, notify_readings
from tests.api.conftest import ClientFactory

URL = "/v1/stream"


@dataclass(frozen=True)
class Event:
    id: str | None
    kind: str
    data: dict[str, Any]


def read_events(lines: Iterator[str], count: int, timeout: float = 15) -> list[Event]:
    """The next ``count`` events of an open stream (heartbeats keep the lines coming,
    so the deadline is checked)."""
    deadline = time.monotonic() + timeout
    events: list[Event] = []
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                events.append(
                    Event(
                        fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])
                    )
                )
                if len(events) == count:
                    return events
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"{len(events)} events of {count} in {timeout} s: {events}")


@dataclass
class Place:
    url: str
    pm25: int
    no2: int
    traffic: int


@pytest.fixture
def place(db_url: str) -> Place:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sites (id, name, kind, municipality, lon, lat) VALUES"
            " ('torget', 'Torget', 'urban_background', 'Narvik', 17.43, 68.44),"
            " ('e6', 'E6', 'road_section', 'Narvik', 17.4, 68.4)"
        )
        conn.execute(
            "INSERT INTO devices (id, site_id, kind) VALUES ('aq-1', 'torget', 'air_quality'),"
            " ('tc-1', 'e6', 'traffic')"
        )
        ids = [
            int(row[0])
            for row in conn.execute(
                "INSERT INTO series (device_id, metric) VALUES ('aq-1', 'pm25'), ('aq-1', 'no2'),"
                " ('tc-1', 'vehicle_count') RETURNING id"
            ).fetchall()
        ]
    return Place(db_url, *ids)


def commit(url: str, *readings: tuple[int, datetime, float, int]) -> None:
    """Store readings and announce them in one transaction, as the ingest writer does."""
    with psycopg.connect(url) as conn:
        for series, moment, value, quality in readings:
            conn.execute(
                "INSERT INTO readings (time, series_id, value, quality) VALUES (%s, %s, %s, %s)",
                (moment, series, value, quality),
            )
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        notify_readings(
            conn,
            np.array([r[0] for r in readings], np.int32),
            np.array([(r[1] - epoch) // timedelta(microseconds=1) for r in readings], np.int64),
        )


@pytest.fixture
def streaming(make_client: ClientFactory, place: Place) -> TestClient:
    client = make_client(place.url, api_stream_heartbeat_s=0.2)
    hub = cast(StreamHub, client.app.state.stream)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 15
    while not hub.listening.is_set():
        assert time.monotonic() < deadline, "the stream hub did not start listening"
        time.sleep(0.02)
    return client


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def test_readings_reach_clients_by_their_filter(streaming: TestClient, place: Place) -> None:
    """A client of pm25 gets pm25's good readings in commit order: not the FAIL one,
    not no2, not traffic; the documents name the series, metric, unit and flag."""
    t = now()
    with streaming.stream("GET", URL, params={"metrics": "pm25"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-license"] == "NLOD-2.0"
        lines = response.iter_lines()
        commit(
            place.url,
            (place.pm25, t, 7.5, 1),
            (place.pm25, t + timedelta(seconds=1), 999.0, 4),
            (place.no2, t, 20.0, 1),
            (place.traffic, t, 3.0, 2),
        )
        commit(place.url, (place.pm25, t + timedelta(seconds=2), 8.5, 3))
        first, second = read_events(lines, 2)
    assert first.kind == second.kind == "reading"
    assert first.data == {
        "series_id": place.pm25,
        "time": t.isoformat().replace("+00:00", "Z"),
        "value": 7.5,
        "quality": 1,
        "quality_name": "good",
        "metric": "pm25",
        "unit": "ug/m3",
        "device_id": "aq-1",
        "site_id": "torget",
    }
    assert first.id == f"{int(t.timestamp()) * 1_000_000}.{place.pm25}"
    assert (second.data["value"], second.data["quality_name"]) == (8.5, "suspect")


def test_failed_readings_when_asked_for_and_sites(streaming: TestClient, place: Place) -> None:
    t = now()
    params = {"sites": "torget", "include_failed": "true", "metrics": "pm25,no2"}
    with streaming.stream("GET", URL, params=params) as response:
        lines = response.iter_lines()
        commit(place.url, (place.pm25, t, 999.0, 4), (place.no2, t, 20.0, 1))
        events = read_events(lines, 2)
    assert sorted((e.data["metric"], e.data["quality_name"]) for e in events) == [
        ("no2", "good"),
        ("pm25", "fail"),
    ]


def test_a_client_resumes_after_its_last_event(streaming: TestClient, place: Place) -> None:
    t = now() - timedelta(minutes=5)
    commit(place.url, *[(place.pm25, t + timedelta(minutes=n), float(n), 1) for n in range(3)])
    after_first = f"{int(t.timestamp()) * 1_000_000}.{place.pm25}"
    headers = {"Last-Event-ID": after_first}
    with streaming.stream("GET", URL, params={"metrics": "pm25"}, headers=headers) as response:
        lines = response.iter_lines()
        replayed = read_events(lines, 2)
        commit(place.url, (place.pm25, t + timedelta(minutes=4), 4.0, 1))
        (live,) = read_events(lines, 1)
    assert [e.data["value"] for e in replayed] == [1.0, 2.0]
    assert live.data["value"] == 4.0


def test_aqi_hours_are_events_too(streaming: TestClient, place: Place) -> None:
    hour = now().replace(minute=0, second=0)
    with streaming.stream("GET", URL, params={"metrics": "aqi"}) as response:
        lines = response.iter_lines()
        with psycopg.connect(place.url) as conn:
            conn.execute(
                "INSERT INTO aqi_hourly (site_id, hour, level, dominant, pm25) VALUES"
                " ('torget', %s, 2, 'pm25', 7.5)",
                (hour,),
            )
            notify_aqi_day(conn, hour - timedelta(hours=1), hour + timedelta(hours=1))
        (event,) = read_events(lines, 1)
    assert event.kind == "aqi"
    assert event.id is None
    assert event.data == {
        "site_id": "torget",
        "hour": hour.isoformat().replace("+00:00", "Z"),
        "level": 2,
        "label": "Fair",
        "dominant": "pm25",
        "pm25": 7.5,
        "pm10": None,
        "no2": None,
        "o3": None,
        "so2": None,
    }


def test_bad_parameters_are_400s(streaming: TestClient) -> None:
    for params, parameter, says in (
        ({"metrics": "pm25,unicorns"}, "metrics", "unicorns"),
        ({"metrics": "vehicle_count"}, "metrics", "15 minutes"),
        ({"sites": "nowhere"}, "sites", "nowhere"),
        ({"sites": "bad id!"}, "sites", "not a site id"),
        ({"include_failed": "maybe"}, "include_failed", ""),
    ):
        response = streaming.get(URL, params=params)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["parameter"] == parameter
        assert says in response.json()["detail"]


def test_clients_beyond_the_bound_get_503(make_client: ClientFactory, place: Place) -> None:
    client = make_client(place.url, api_stream_max_clients=1, api_stream_heartbeat_s=0.2)
    with client.stream("GET", URL) as first:
        assert first.status_code == 200
        refused = client.get(URL)
        assert refused.status_code == 503
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.headers["retry-after"] == "30"
        assert refused.json()["limit"] == 1
    # the place is free again once the first client has gone
    hub = cast(StreamHub, client.app.state.stream)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while hub.subscribers:
        assert time.monotonic() < deadline, "the first client was never let go"
        time.sleep(0.02)
    with client.stream("GET", URL) as again:
        assert again.status_code == 200
    off = make_client(place.url, api_stream_max_clients=0)
    assert off.get(URL).status_code == 503


def test_a_slow_client_is_dropped_not_buffered() -> None:
    """Fan-out without a database: a client that reads nothing keeps at most its queue,
    then is dropped, its queue emptied but for the end mark."""
    settings = Settings(env="test", api_stream_queue_size=10)  # type: ignore[call-arg]
    hub = StreamHub("postgresql://unused", cast(Any, None), settings)
    slow = hub.register(None, None, False, True)
    picky = hub.register(frozenset({"no2"}), frozenset({"torget"}), False, False)
    assert slow is not None
    assert picky is not None
    events: list[Reading | AqiHour] = [
        Reading(1, n, float(n), 1, "pm25", "ug/m3", "aq-1", "torget") for n in range(25)
    ]
    hub.deliver(events[:10])
    assert slow.queue.qsize() == 10
    assert not slow.dropped
    hub.deliver(events[10:])
    assert slow.dropped
    assert slow.queue.qsize() == 1
    assert slow.queue.get_nowait() is None
    assert hub.subscribers == {picky}
    assert hub.dropped == 1
    assert picky.queue.empty()  # pm25 is not what it asked for
    failed = Reading(2, 1, 1.0, 4, "no2", "ug/m3", "aq-1", "torget")
    elsewhere = Reading(2, 2, 1.0, 1, "no2", "ug/m3", "aq-2", "fjord")
    hub.deliver([failed, elsewhere, AqiHour("torget", datetime.now(UTC), 1, "no2", (None,) * 5)])
    assert picky.queue.empty()


def test_the_stream_is_documented(streaming: TestClient) -> None:
    operation = streaming.get("/openapi.json").json()["paths"]["/v1/stream"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert {p["name"] for p in operation["parameters"]} >= {
        "metrics",
        "sites",
        "include_failed",
        "Last-Event-ID",
    }
    assert "503" in operation["responses"]


def test_hostile_strings_in_every_parameter_get_a_stream_or_a_problem(
    streaming: TestClient,
) -> None:
    """The fuzzer's hostile strings (tests/api/test_hostile.py), each in each of the
    stream's parameters: 200 (a stream, closed at once) or a 4xx problem, never 5xx."""
    from tests.api.test_hostile import HOSTILE

    statuses: Counter[int] = Counter()
    for value in HOSTILE:
        for params, headers in (
            ({"metrics": value}, {}),
            ({"sites": value}, {}),
            ({"include_failed": value}, {}),
            ({}, {"Last-Event-ID": value}),
        ):
            # header values go as UTF-8 bytes; ones no HTTP client can send are skipped
            request_headers = {k: v.encode() for k, v in headers.items()}
            if any(b in v for v in request_headers.values() for b in (b"\r", b"\n", b"\x00")):
                continue
            with streaming.stream("GET", URL, params=params, headers=request_headers) as response:
                statuses[response.status_code] += 1
                assert response.status_code < 500, (params, headers, response.read())
                if response.status_code != 200:
                    assert response.headers["content-type"].startswith("application/problem+json")
    assert statuses[200]
    assert statuses[400]
