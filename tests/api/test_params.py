"""Times as people write them (issue 16): the parser of ``from``/``to`` on its own, and
the routes taking dates, typed offsets (a '+' that arrives as a space), Z and spans
back, with refusals that show forms that work."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.params import TIME_EXAMPLES, TimeError, parse_time, time_range
from api.problems import Problem
from tests.fixtures.simulated import SimulatedData

OSLO = ZoneInfo("Europe/Oslo")
NOW = datetime(2026, 11, 10, 12, 0, 30, tzinfo=UTC)
NEXT_MINUTE = datetime(2026, 11, 10, 12, 1, tzinfo=UTC)
PLUS_ONE = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-11-01T00:00:00+01:00", datetime(2026, 11, 1, tzinfo=PLUS_ONE)),
        # a '+' typed into a query string arrives as a space (form encoding)
        ("2026-11-01T00:00:00 01:00", datetime(2026, 11, 1, tzinfo=PLUS_ONE)),
        ("2026-11-01T00:00:00-01:00", datetime(2026, 11, 1, 1, tzinfo=UTC)),
        ("2026-10-31T23:00:00Z", datetime(2026, 10, 31, 23, tzinfo=UTC)),
        ("2026-10-31t23:00:00z", datetime(2026, 10, 31, 23, tzinfo=UTC)),
        ("2026-10-31 23:00:00Z", datetime(2026, 10, 31, 23, tzinfo=UTC)),
        ("2026-11-01T00:00+0100", datetime(2026, 11, 1, tzinfo=PLUS_ONE)),
        ("2026-11-01T00:00:00.250+01:00", datetime(2026, 11, 1, 0, 0, 0, 250000, PLUS_ONE)),
    ],
)
def test_instants_with_an_offset_in_the_ways_people_type_them(text: str, moment: datetime) -> None:
    spec = parse_time(text)
    assert spec.instant == moment
    assert spec.resolve(OSLO, NOW) == moment


def test_a_date_is_the_local_midnight_that_starts_it() -> None:
    winter = parse_time("2026-11-01")
    assert winter.day == date(2026, 11, 1)
    assert winter.resolve(OSLO, NOW) == datetime(2026, 10, 31, 23, tzinfo=UTC)
    summer = parse_time("2026-07-01").resolve(OSLO, NOW)
    assert summer == datetime(2026, 6, 30, 22, tzinfo=UTC)  # CEST, +02:00
    # the day the clocks go back is 25 hours long, midnight to midnight
    span = time_range(
        "2026-10-25", "2026-10-26", default_span=timedelta(1), max_days=9, tz=OSLO.key
    )
    assert span.end - span.start == timedelta(hours=25)


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("-7d", timedelta(days=7)),
        ("-24h", timedelta(hours=24)),
        ("-30m", timedelta(minutes=30)),
        ("-90s", timedelta(seconds=90)),
        ("-2w", timedelta(weeks=2)),
        ("P7D", timedelta(days=7)),
        ("p7d", timedelta(days=7)),
        ("PT24H", timedelta(hours=24)),
        ("P1W", timedelta(weeks=1)),
        ("P1DT12H30M", timedelta(days=1, hours=12, minutes=30)),
        ("-P7D", timedelta(days=7)),
        ("now", timedelta(0)),
    ],
)
def test_spans_back(text: str, back: timedelta) -> None:
    assert parse_time(text).back == back


def test_from_counts_back_from_to_and_to_from_now() -> None:
    span = time_range("-7d", None, default_span=timedelta(1), max_days=400, now=NOW)
    assert (span.start, span.end) == (NEXT_MINUTE - timedelta(days=7), NEXT_MINUTE)
    fixed = time_range("P7D", "2026-11-08", default_span=timedelta(1), max_days=400, tz=OSLO.key)
    assert fixed.end == datetime(2026, 11, 7, 23, tzinfo=UTC)
    assert fixed.start == fixed.end - timedelta(days=7)
    earlier = time_range("-2h", "-1h", default_span=timedelta(1), max_days=400, now=NOW)
    assert (earlier.start, earlier.end) == (
        NEXT_MINUTE - timedelta(hours=3),
        NEXT_MINUTE - timedelta(hours=1),
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("yesterday", "is not a time"),
        ("2026-13-01", "not a date of the calendar"),
        ("2026-02-30T00:00:00Z", "not a time of the calendar"),
        ("2026-11-01T00:00:00", "no UTC offset"),
        ("P", "not a span back"),
        ("PT", "not a span back"),
        ("P1DT", "not a span back"),
        ("P1M", "months and years vary"),
        ("-1y", "months and years vary"),
        ("-7", "not a span back"),
        ("-999999w", "more than"),
        ("0001-01-01T00:00:00+14:00", "not a time of the calendar"),
        ("1" * 200, "is not a time"),
    ],
)
def test_refusals_show_forms_that_work(text: str, says: str) -> None:
    with pytest.raises(TimeError, match=says) as refused:
        parse_time(text)
    if "more than" not in says:
        assert TIME_EXAMPLES in str(refused.value)
    assert len(str(refused.value)) < 400  # a long input is not echoed whole


def test_a_range_in_the_wrong_order_says_how_to_write_one() -> None:
    with pytest.raises(Problem, match=r"e\.g\. from=-7d"):
        time_range("2026-11-08", "2026-11-01", default_span=timedelta(1), max_days=400)
    with pytest.raises(Problem, match="from=-30d"):
        time_range("-60d", None, default_span=timedelta(1), max_days=30, now=NOW)


# ---------------------------------------------------------------------- routes


def series_of(url: str, device: str, metric: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT id FROM series WHERE device_id = %s AND metric = %s", (device, metric)
        ).fetchone()
    assert row is not None
    return int(row[0])


def hourly(client: TestClient, sid: int, query: str) -> dict[str, Any]:
    response = client.get(f"/v1/series/{sid}/data?bucket=1h&{query}")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def test_routes_take_dates_typed_offsets_z_and_spans(
    client: TestClient, simulated: SimulatedData
) -> None:
    sid = series_of(simulated.url, "aq-sentrum", "pm25")
    end = datetime.fromtimestamp(simulated.end, UTC)
    day = (end - timedelta(days=1)).astimezone(OSLO).date()
    midnight = datetime.combine(day, datetime.min.time(), OSLO)
    # a date, and the same instant with the offset typed raw ('+' -> space) and in UTC
    offset = midnight.strftime("%Y-%m-%dT%H:%M:%S") + " " + midnight.strftime("%z")[1:]
    z = midnight.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    to = end.strftime("%Y-%m-%dT%H:%M:%SZ")
    by_date = hourly(client, sid, f"from={day.isoformat()}&to={to}")
    by_offset = hourly(client, sid, f"from={offset}&to={to}")
    by_z = hourly(client, sid, f"from={z}&to={to}")
    assert datetime.fromisoformat(by_date["from"]) == midnight
    assert by_date["data"] == by_offset["data"] == by_z["data"]
    assert by_date["data"][0]["time"] == z
    # a span back from 'to': P1D and -24h are the same day of hours
    back = hourly(client, sid, f"from=P1D&to={to}")
    assert back["data"] == hourly(client, sid, f"from=-24h&to={to}")["data"]
    assert datetime.fromisoformat(back["from"]) == end - timedelta(days=1)
    assert len(back["data"]) == 24


@pytest.mark.parametrize(
    "path",
    [
        "/v1/series/{sid}/data?from=2026-11-01T00:00:00",
        "/v1/series/{sid}/data?from=last+week",
        "/v1/aqi/narvik-sentrum?to=P1M",
        "/v1/export/aqi?from=31.10.2026",
    ],
)
def test_route_refusals_are_400s_with_a_working_example(
    client: TestClient, simulated: SimulatedData, path: str
) -> None:
    sid = series_of(simulated.url, "aq-sentrum", "pm25")
    response = client.get(path.format(sid=sid))
    assert response.status_code == 400, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["parameter"] in ("from", "to")
    assert "e.g. 2026-11-01 (local midnight)" in problem["detail"]
