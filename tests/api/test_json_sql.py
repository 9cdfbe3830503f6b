"""The JSON PostgreSQL writes for the data pages (`api.json_sql`) is the JSON orjson
writes of the same rows (`api.responses.dumps`): the same bytes, except where a
number's exponent is spelled differently, and then the same number."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg import sql

from api.json_sql import (
    DATA_PLACEHOLDER,
    json_integer,
    json_number,
    json_object,
    json_string,
    json_time,
    page_json_query,
    splice,
)
from api.queries import Query
from api.responses import dumps

T0 = datetime(2026, 1, 5, 6, 7, 8, tzinfo=UTC)

#: (time, number, integer, text): the edges of each kind
ROWS: list[tuple[datetime | None, float | None, int | None, str | None]] = [
    (T0, 6.0, 1, "plain"),
    (T0 + timedelta(microseconds=250_000), 0.1, -3, 'quote " and \\ backslash'),
    (T0 + timedelta(microseconds=1), -0.0, 0, "tab\tnewline\nbell\x07"),
    (T0 + timedelta(hours=9000), 1 / 3, 2**62, "æøå µg/m³ 😀"),
    (None, None, None, None),
    (T0, math.nan, 7, ""),
    (T0, math.inf, 8, "x"),
    (T0, -math.inf, 9, "y"),
    (T0, 123456789.125, 10, "z"),
    (T0, -273.15, 11, "</script>"),
]
#: numbers whose exponent PostgreSQL spells otherwise (``1e-05``, ``1e+15``)
EXPONENTS = [1e-5, 2.5e-7, 1e15, -3e20, 1.7976931348623157e308, 5e-324]

ROW_JSON = json_object(
    [
        ("time", json_time(sql.SQL("q.t"))),
        ("number", json_number(sql.SQL("q.v"))),
        ("integer", json_integer(sql.SQL("q.n"))),
        ("text", json_string(sql.SQL("q.s"))),
    ]
)


def rows_query(rows: Sequence[tuple[Any, ...]]) -> Query:
    params: dict[str, Any] = {}
    values: list[sql.Composable] = []
    for i, row in enumerate(rows):
        params.update({f"t{i}": row[0], f"v{i}": row[1], f"n{i}": row[2], f"s{i}": row[3]})
        values.append(
            sql.SQL(
                "({i}, %(t{i})s::timestamptz, %(v{i})s::float8, %(n{i})s::int8, %(s{i})s::text)"
            ).format(i=sql.Literal(i))
        )
    query = sql.SQL("SELECT t, v, n, s FROM (VALUES {}) r(i, t, v, n, s) ORDER BY i").format(
        sql.SQL(", ").join(values)
    )
    return query, params


def orjson_of(rows: Sequence[tuple[Any, ...]]) -> bytes:
    return dumps([{"time": t, "number": v, "integer": n, "text": s} for t, v, n, s in rows])


def test_rows_are_the_bytes_orjson_writes(conn: psycopg.Connection) -> None:
    found, data, *_ = conn.execute(
        *page_json_query(rows_query(ROWS), ROW_JSON, page_size=None)
    ).fetchone()  # type: ignore[misc]
    assert found == len(ROWS)
    assert b"[" + bytes(data) + b"]" == orjson_of(ROWS)


def test_exponents_are_the_same_numbers(conn: psycopg.Connection) -> None:
    rows = [(T0, value, 1, "e") for value in EXPONENTS]
    _, data = conn.execute(*page_json_query(rows_query(rows), ROW_JSON, page_size=None)).fetchone()  # type: ignore[misc]
    assert orjson.loads(b"[" + bytes(data) + b"]") == orjson.loads(orjson_of(rows))


def test_a_page_holds_its_size_and_names_its_last_row(conn: psycopg.Connection) -> None:
    """One row more than the page says a next page follows; the keys are the last
    row's on the page, as a cursor needs them."""
    query = page_json_query(
        rows_query(ROWS[:4]), ROW_JSON, page_size=3, keys=(sql.SQL("q.n"),), order=sql.SQL("q.t")
    )
    found, data, last = conn.execute(*query).fetchone()  # type: ignore[misc]
    # by time: T0, then a microsecond later, then a quarter of a second later
    assert (found, last) == (4, -3)
    assert b"[" + bytes(data) + b"]" == orjson_of([ROWS[0], ROWS[2], ROWS[1]])
    empty = page_json_query(rows_query(ROWS[:2]), ROW_JSON, page_size=3, keys=(sql.SQL("q.n"),))
    assert conn.execute(*empty).fetchone()[2] is None  # type: ignore[index]


def test_the_page_goes_where_the_placeholder_was() -> None:
    envelope = dumps({"metric": "no2", "data": DATA_PLACEHOLDER, "next": None})
    assert (
        splice(envelope, b'{"a":1},{"a":2}')
        == b'{"metric":"no2","data":[{"a":1},{"a":2}],"next":null}'
    )
