"""The query builders and parameter parsers, without a database: what SQL they
compose, with which parameters (values never inside the text)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api import queries
from api.params import (
    BoundingBox,
    Cursor,
    decode_cursor,
    encode_cursor,
    parse_bbox,
    site_path_id,
    time_range,
)
from api.problems import Problem

T0 = datetime(2026, 1, 5, tzinfo=UTC)
T1 = datetime(2026, 2, 4, tzinfo=UTC)


def text(query: queries.Query) -> str:
    return query[0].as_string(None)


def test_sites_filters_are_parameters() -> None:
    query = queries.sites_query("roadside", BoundingBox(17.0, 68.0, 18.0, 69.0))
    sql = text(query)
    assert '"s"."kind" = %(kind)s' in sql
    assert "s.lon BETWEEN %(min_lon)s AND %(max_lon)s" in sql
    assert "roadside" not in sql
    assert "17.0" not in sql
    assert query[1] == {
        "kind": "roadside",
        "min_lon": 17.0,
        "max_lon": 18.0,
        "min_lat": 68.0,
        "max_lat": 69.0,
    }
    assert text(queries.sites_query()).endswith("AS devices FROM sites s ORDER BY s.id")


def test_devices_select_public_columns_only() -> None:
    sql = text(queries.devices_query(kind="traffic", site_id="x"))
    assert "secret_hash" not in sql
    assert '"d"."kind" = %(kind)s AND "d"."site_id" = %(site_id)s' in sql
    admin = text(queries.devices_query(device_id="aq-1", admin=True))
    assert "secret_hash IS NOT NULL AS has_secret" in admin
    assert '"d"."secret_hash"' not in admin


def test_latest_takes_traffic_from_hourly_rollups() -> None:
    query = queries.latest_query(kind="traffic", metric=None, site_id="e6")
    sql = text(query)
    assert "FROM readings WHERE series_id = se.id ORDER BY time DESC LIMIT 1" in sql
    assert "m.domain <> ALL(%(private)s)" in sql
    assert "resolution = '1h'" in sql
    assert "m.domain = ANY(%(private)s)" in sql
    assert query[1] == {"kind": "traffic", "site_id": "e6", "private": ["traffic"]}


def test_rollup_page_for_one_series_reads_rows_in_key_order() -> None:
    query = queries.rollup_page_query([7], "1h", T0, T1, after=None, limit=11, tz="Europe/Oslo")
    sql = text(query)
    assert "series_id = %(series_id)s AND resolution = %(resolution)s" in sql
    assert "GROUP BY bucket" not in sql.split("page AS")[1]
    assert "p.bucket + '1 hour'::interval" in sql
    assert "bucket > %(after)s" not in sql
    assert query[1]["series_id"] == 7
    assert query[1]["limit"] == 11
    assert "tz" not in query[1]


def test_rollup_page_merges_several_series_per_bucket_and_days_are_local() -> None:
    after = T0 + timedelta(days=3)
    query = queries.rollup_page_query([7, 9], "1d", T0, T1, after=after, limit=5, tz="Europe/Oslo")
    sql = text(query)
    assert "GROUP BY bucket" in sql
    assert "(array_agg(first_value ORDER BY first_time, first_value))[1]" in sql
    assert "AT TIME ZONE %(tz)s) + interval '1 day') AT TIME ZONE %(tz)s" in sql
    assert "bucket > %(after)s" in sql
    assert query[1]["series"] == [7, 9]
    assert query[1]["tz"] == "Europe/Oslo"
    assert query[1]["after"] == after


def test_raw_page_is_a_keyset_page() -> None:
    query = queries.raw_page_query([3], T0, T1, after=(T0, 3), limit=101)
    sql = text(query)
    assert "(time, series_id) > (%(after_time)s, %(after_series)s)" in sql
    assert sql.endswith("ORDER BY time, series_id LIMIT %(limit)s")
    assert query[1]["after_time"] == T0


def test_indicator_pages_quote_identifiers_and_refuse_unknown_filters() -> None:
    query = queries.indicator_page_query(
        queries.TRAFFIC_DAILY,
        T0,
        T1,
        equal={"device_id": "tc-1", "site_id": None},
        after=Cursor(T0, "tc-0"),
        limit=50,
    )
    sql = text(query)
    assert sql.startswith('SELECT "device_id", "site_id", "day", "day_start"')
    assert 'FROM "traffic_daily"' in sql
    assert '"device_id" = %(device_id)s' in sql
    assert "site_id = %(site_id)s" not in sql
    assert '("day_start", "device_id") > (%(after_time)s, %(after_key)s)' in sql
    assert sql.endswith('ORDER BY "day_start", "device_id" LIMIT %(limit)s')
    with pytest.raises(ValueError, match="cannot be filtered"):
        queries.indicator_page_query(
            queries.ENERGY_DAILY, T0, T1, equal={"device_id": "x"}, after=None, limit=1
        )


# ---------------------------------------------------------------------- parameters


def test_time_range_defaults_and_limits() -> None:
    now = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
    span = time_range(None, None, default_span=timedelta(days=30), max_days=400, now=now)
    assert span.end == datetime(2026, 3, 1, 12, 1, tzinfo=UTC)  # next whole minute
    assert span.end - span.start == timedelta(days=30)
    short = time_range(None, None, default_span=timedelta(days=365), max_days=7, now=now)
    assert short.end - short.start == timedelta(days=7)
    with pytest.raises(Problem, match="must be before"):
        time_range(T1, T0, default_span=timedelta(days=1), max_days=400)
    with pytest.raises(Problem, match="at most 10 days") as too_long:
        time_range(T0, T1, default_span=timedelta(days=1), max_days=10)
    assert too_long.value.status == 400
    assert too_long.value.extra["limit_days"] == 10
    with pytest.raises(Problem, match="year 1"):
        time_range(
            None,
            datetime(1, 1, 2, tzinfo=UTC),
            default_span=timedelta(days=30),
            max_days=400,
        )


def test_bbox_parsing() -> None:
    assert parse_bbox("17,68.1,18,69") == BoundingBox(17.0, 68.1, 18.0, 69.0)
    for bad in ("1,2,3", "x,1,2,3", "2,0,1,1", "0,-91,1,1", "nan,0,1,1"):
        with pytest.raises(Problem) as problem:
            parse_bbox(bad)
        assert problem.value.extra == {"parameter": "bbox"}


def test_cursors_round_trip_and_garbage_is_a_400() -> None:
    moment = datetime(2026, 1, 5, 13, 45, 12, 345678, tzinfo=UTC)
    assert decode_cursor(encode_cursor(moment, 42)) == Cursor(moment, "42")
    assert decode_cursor(encode_cursor(moment, "tc-e6")) == Cursor(moment, "tc-e6")
    for garbage in ("", "@@@", "bm90IGEgY3Vyc29y", encode_cursor(moment, "\x00")):
        with pytest.raises(Problem) as problem:
            decode_cursor(garbage)
        assert problem.value.extra == {"parameter": "cursor"}


def test_path_ids_that_cannot_exist_are_not_found() -> None:
    assert site_path_id("narvik-sentrum") == "narvik-sentrum"
    with pytest.raises(Problem) as problem:
        site_path_id("Narvik Sentrum")
    assert problem.value.status == 404
