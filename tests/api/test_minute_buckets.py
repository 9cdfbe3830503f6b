"""bucket=1m, as the JSON route and the export serve it: minute rows where a series
reports often enough to have them, the readings' own minutes otherwise, and either
way the numbers of a plain GROUP BY over the readings, for a series and for a site
whose devices report at different rates; pages join up; FAIL readings stay out."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from core.rollups import LatestTimes
from db.rollups import create_staging, merge_partials
from tests.api.conftest import ClientFactory

SITE = "site-busy"
START = datetime(2026, 9, 21, 13, 0, tzinfo=UTC)
#: the independent answer: every minute of the given series, merged over them
GROUP_BY = """
    SELECT date_trunc('minute', time) AS minute, count(*),
           count(*) FILTER (WHERE quality IN (1, 2)), sum(value), avg(value),
           sqrt(greatest(avg(value * value) - avg(value) * avg(value), 0)), min(value),
           max(value), (array_agg(value ORDER BY time, value))[1],
           (array_agg(value ORDER BY time DESC, value DESC))[1]
    FROM readings
    WHERE series_id = ANY(%s) AND quality NOT IN (4, 9) AND time >= %s AND time < %s
    GROUP BY 1 ORDER BY 1"""


def _store(
    conn: psycopg.Connection[Any], db_url: str, device: str, times_s: np.ndarray, seed: int
) -> int:
    """A device at the busy site with a power series, its readings stored and merged
    the way the ingest writer merges them (in batches of 50, with its memory)."""
    conn.execute(
        "INSERT INTO sites (id, name, kind, municipality, lon, lat) VALUES"
        " (%s, 'Busy', 'building', 'Narvik', 17.43, 68.44) ON CONFLICT DO NOTHING",
        (SITE,),
    )
    conn.execute(
        "INSERT INTO devices (id, site_id, kind) VALUES (%s, %s, 'energy')", (device, SITE)
    )
    row = conn.execute(
        "INSERT INTO series (device_id, metric) VALUES (%s, 'power') RETURNING id", (device,)
    ).fetchone()
    assert row is not None
    series = int(row[0])
    rng = np.random.default_rng(seed)
    t = (START.timestamp() + times_s) * 1_000_000
    times = np.round(t).astype(np.int64)
    values = np.round(rng.gamma(4.0, 500.0, len(times)), 1)
    quality = rng.choice(np.array([1, 2, 3, 4], np.int16), len(times), p=[0.85, 0.05, 0.05, 0.05])
    latest = LatestTimes()
    with psycopg.connect(db_url) as writer:
        create_staging(writer)
        writer.commit()
        for lo in range(0, len(times), 50):
            part = slice(lo, lo + 50)
            with writer.transaction():
                writer.execute(
                    "INSERT INTO readings (time, series_id, value, quality)"
                    " SELECT 'epoch'::timestamptz + t * interval '1 microsecond', %s, v, q"
                    " FROM unnest(%s::int8[], %s::float8[], %s::int2[]) AS u(t, v, q)",
                    (
                        series,
                        times[part].tolist(),
                        values[part].tolist(),
                        quality[part].tolist(),
                    ),
                )
                merge_partials(
                    writer,
                    np.full(len(times[part]), series, np.int32),
                    times[part],
                    values[part],
                    quality[part],
                    latest=latest,
                )
    return series


@pytest.fixture
def busy_site(conn: psycopg.Connection[Any], db_url: str) -> tuple[int, int]:
    """Two power meters at one site for three hours: one every 2 s (minute rows of
    its own), one every minute (none)."""
    fast = _store(conn, db_url, "meter-fast", np.arange(0, 3 * 3600, 2.0) + 0.25, seed=1)
    slow = _store(conn, db_url, "meter-slow", np.arange(0, 3 * 3600, 60.0) + 17.0, seed=2)
    return fast, slow


def _expected(
    conn: psycopg.Connection[Any], series: list[int], start: datetime, end: datetime
) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(GROUP_BY, (series, start, end)).fetchall()]


def _served(points: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            datetime.fromisoformat(p["time"]),
            p["count"],
            p["good_count"],
            p["sum"],
            p["mean"],
            p["std"],
            p["min"],
            p["max"],
            p["first"],
            p["last"],
        )
        for p in points
    ]


def _approx(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [
        tuple(pytest.approx(v, rel=1e-9, abs=1e-6) if isinstance(v, float) else v for v in row)
        for row in rows
    ]


def _all_pages(client: Any, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    response = client.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        document = response.json()
        points.extend(document["data"])
        if document["next"] is None:
            return points
        response = client.get(document["next"])


def test_minutes_of_a_series_and_a_site_equal_a_group_by_over_the_readings(
    conn: psycopg.Connection[Any],
    db_url: str,
    make_client: ClientFactory,
    busy_site: tuple[int, int],
) -> None:
    fast, slow = busy_site
    stored = conn.execute(
        "SELECT series_id, count(*) FROM rollups WHERE resolution = '1m' GROUP BY 1"
    ).fetchall()
    assert stored == [(fast, 180)]  # the fast meter's minutes only
    client = make_client(db_url)
    # from and to off the minute: buckets starting in [from, to)
    start, end = START + timedelta(minutes=7, seconds=30), START + timedelta(hours=2, seconds=1)
    first_minute = START + timedelta(minutes=8)
    last_minute = START + timedelta(hours=2, minutes=1)
    params = {"from": start.isoformat(), "to": end.isoformat(), "bucket": "1m", "limit": 5000}
    for series, path in (
        ([fast], f"/v1/series/{fast}/data"),
        ([slow], f"/v1/series/{slow}/data"),
        ([fast, slow], f"/v1/sites/{SITE}/metrics/power/data"),
    ):
        document = client.get(path, params=params).json()
        assert document["series"] == series
        want = _expected(conn, series, first_minute, last_minute)
        assert len(want) > 100  # 113 minutes, less those whose one reading failed
        assert _served(document["data"]) == _approx(want), path
        ends = [datetime.fromisoformat(p["end"]) for p in document["data"]]
        assert ends == [t + timedelta(minutes=1) for t, *_ in want]
        # pages of 7 join up to the whole, across stored and computed hours
        assert _all_pages(client, path, {**params, "limit": 7}) == document["data"], path


def test_a_damaged_minute_row_is_not_served_and_failed_readings_never_are(
    conn: psycopg.Connection[Any],
    db_url: str,
    make_client: ClientFactory,
    busy_site: tuple[int, int],
) -> None:
    fast, _ = busy_site
    # a minute row lost: its hour no longer adds up, and is computed from the readings
    conn.execute(
        "DELETE FROM rollups WHERE series_id = %s AND resolution = '1m' AND bucket = %s",
        (fast, START + timedelta(minutes=70)),
    )
    # a reading turned FAIL after it was merged (as a QC revision does, minus its
    # recomputation): the hour's rows now count one reading too many
    conn.execute(
        "UPDATE readings SET quality = 4 WHERE series_id = %s AND time = %s",
        (fast, START + timedelta(minutes=130, seconds=0.25)),
    )
    conn.execute(
        "UPDATE rollups SET count = count + 1 WHERE series_id = %s AND resolution = '1h'"
        " AND bucket = %s",
        (fast, START + timedelta(hours=2)),
    )
    client = make_client(db_url)
    params = {
        "from": START.isoformat(),
        "to": (START + timedelta(hours=3)).isoformat(),
        "bucket": "1m",
        "limit": 5000,
    }
    data = client.get(f"/v1/series/{fast}/data", params=params).json()["data"]
    want = _expected(conn, [fast], START, START + timedelta(hours=3))
    assert len(want) == 180
    assert _served(data) == _approx(want)


def test_the_minute_export_holds_the_routes_numbers(
    conn: psycopg.Connection[Any],
    db_url: str,
    make_client: ClientFactory,
    busy_site: tuple[int, int],
) -> None:
    fast, slow = busy_site
    client = make_client(db_url)
    span = {"from": START.isoformat(), "to": (START + timedelta(hours=3)).isoformat()}
    for series in (fast, slow):
        route = client.get(
            f"/v1/series/{series}/data", params={**span, "bucket": "1m", "limit": 5000}
        ).json()["data"]
        response = client.get(
            "/v1/export/readings", params={**span, "series": series, "bucket": "1m"}
        )
        assert response.status_code == 200, response.text
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) == len(route) > 170  # less the slow meter's failed minutes
        assert [int(r["count"]) for r in rows] == [p["count"] for p in route]
        assert [datetime.fromisoformat(r["time"]) for r in rows] == [
            datetime.fromisoformat(p["time"]) for p in route
        ]


def test_minutes_over_days_and_years_start_where_the_data_starts(
    conn: psycopg.Connection[Any],
    db_url: str,
    make_client: ClientFactory,
    busy_site: tuple[int, int],
) -> None:
    """Minutes are computed a UTC day at a time from the series' first hour in the
    range: a range that starts a year early, or whose data crosses midnight, pages
    to the same minutes as the GROUP BY."""
    _, slow = busy_site
    # the slow meter's readings go on past midnight: a second day of minutes
    late = np.arange(0, 12 * 3600, 60.0) + 3 * 3600 + 17.0
    _store_more(conn, db_url, slow, late)
    client = make_client(db_url)
    params = {
        "from": (START - timedelta(days=365)).isoformat(),
        "to": (START + timedelta(days=2)).isoformat(),
        "bucket": "1m",
        "limit": 500,
    }
    points = _all_pages(client, f"/v1/series/{slow}/data", params)
    want = _expected(conn, [slow], START - timedelta(days=365), START + timedelta(days=2))
    assert want[-1][0] > START.replace(hour=0) + timedelta(days=1)  # past midnight
    assert len(want) > 800
    assert _served(points) == _approx(want)


def _store_more(
    conn: psycopg.Connection[Any], db_url: str, series: int, times_s: np.ndarray
) -> None:
    """More once-a-minute readings of a series, merged as the writer merges them."""
    times = np.round((START.timestamp() + times_s) * 1_000_000).astype(np.int64)
    values = np.round(np.random.default_rng(3).gamma(4.0, 500.0, len(times)), 1)
    quality = np.ones(len(times), np.int16)
    with psycopg.connect(db_url) as writer:
        create_staging(writer)
        writer.commit()
        with writer.transaction():
            writer.execute(
                "INSERT INTO readings (time, series_id, value, quality)"
                " SELECT 'epoch'::timestamptz + t * interval '1 microsecond', %s, v, q"
                " FROM unnest(%s::int8[], %s::float8[], %s::int2[]) AS u(t, v, q)",
                (series, times.tolist(), values.tolist(), quality.tolist()),
            )
            merge_partials(writer, np.full(len(times), series, np.int32), times, values, quality)
