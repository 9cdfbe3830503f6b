"""JSON built by PostgreSQL: a page's rows as one JSON text, for the data-heavy reads.

Issue 17: a 30-day hourly page is 720 rows of 13 values; building one Python dict
per row and encoding them cost about 10 ms of CPU per request, PostgreSQL's query
itself 1.4 ms.  Here the query builds each row's JSON text and aggregates the page
into one string (`page_json_query`), and the route splices those bytes into the
envelope orjson renders (`splice`), so Python touches one value per page, not one
per point.

The text is what `api.responses.dumps` (orjson) writes for the same rows, in
meaning: the same keys in the same order; times as RFC 3339 in UTC with ``Z`` and
microseconds only when there are some (`json_time`); NaN and infinities as null
(orjson's rule, RFC 8259 §6 has no NaN); floats as PostgreSQL's shortest exact text,
which is orjson's digits (both print the shortest string that reads back the same
double), whole ones with ``.0`` as orjson writes them; only exponents are spelled
differently (``1e-05`` for ``1e-5``, ``1e+15`` for ``1000000000000000.0``: the same
JSON number, RFC 8259 §6).
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from api.queries import Query

S = sql.SQL

#: the placeholder of the page's JSON in an envelope (orjson escapes the NULs, so no
#: other string of a document renders to the same bytes)
DATA_PLACEHOLDER = "\x00smartby-json-data\x00"
_PLACEHOLDER_JSON = b'"\\u0000smartby-json-data\\u0000"'


def rfc3339(expr: sql.Composable) -> sql.Composable:
    """A timestamptz (not NULL) as the text orjson writes of a UTC datetime with
    OPT_UTC_Z: ``2026-11-29T22:00:00Z``, ``…:00.250000Z`` when not a whole second."""
    return S(
        "to_char({e} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        " || CASE WHEN date_trunc('second', {e}) = {e} THEN 'Z'"
        " ELSE to_char({e} AT TIME ZONE 'UTC', '.US\"Z\"') END"
    ).format(e=expr)


def json_time(expr: sql.Composable) -> sql.Composable:
    """A timestamptz as a JSON string (`rfc3339`), null for NULL."""
    return S("CASE WHEN {e} IS NULL THEN 'null' ELSE '\"' || {t} || '\"' END").format(
        e=expr, t=rfc3339(expr)
    )


def json_number(expr: sql.Composable) -> sql.Composable:
    """A float8 as a JSON number, as orjson writes it: whole numbers with ``.0``
    (PostgreSQL's shortest exact text writes ``6``); null for NULL, NaN and the
    infinities (NaN sorts above Infinity in PostgreSQL, so both bounds exclude it)."""
    return S(
        "CASE WHEN {e} < 'Infinity' AND {e} > '-Infinity' THEN"
        " CASE WHEN {e} = trunc({e}) AND abs({e}) < 1e15 THEN {e}::text || '.0'"
        " ELSE {e}::text END ELSE 'null' END"
    ).format(e=expr)


def json_integer(expr: sql.Composable) -> sql.Composable:
    """An integer as a JSON number, null for NULL."""
    return S("coalesce({e}::text, 'null')").format(e=expr)


def json_string(expr: sql.Composable) -> sql.Composable:
    """A text as a JSON string (PostgreSQL's escaping, RFC 8259 §7), null for NULL."""
    return S("coalesce(to_json({e}::text)::text, 'null')").format(e=expr)


def json_raw(expr: sql.Composable) -> sql.Composable:
    """A json/jsonb value as its text, null for NULL."""
    return S("coalesce({e}::text, 'null')").format(e=expr)


def json_object(fields: Sequence[tuple[str, sql.Composable]]) -> sql.Composable:
    """``{"key":value,…}`` of fields whose values are JSON texts already (the
    ``json_*`` helpers); keys in the order given, no spaces, as orjson writes."""
    parts: list[sql.Composable] = []
    for index, (key, value) in enumerate(fields):
        head = ("{" if index == 0 else ",") + '"' + key + '":'
        parts += [sql.Literal(head), value]
    parts.append(sql.Literal("}" if fields else "{}"))
    return S(" || ").join(parts)


def page_json_query(
    rows: Query,
    row_json: sql.Composable,
    *,
    page_size: int | None,
    keys: Sequence[sql.Composable] = (),
    order: sql.Composable | None = None,
) -> Query:
    """One row for a page read as ``rows`` (its own ORDER BY, at most ``page_size + 1``
    rows, columns visible as ``q.*``): how many rows it found, the JSON of the first
    ``page_size`` joined by commas (UTF-8 bytes, empty when none), then each of ``keys`` of the
    page's last row when a row follows it (the next page's cursor), else NULL.

    ``page_size=None``: every row, no cursor.  The rows are numbered by ``order``
    (the inner query's own ORDER BY, in terms of ``q``, which its sorted output
    satisfies without a second sort), or, without one, in the order the inner query
    returns them (a window without ORDER BY reads its input as it comes: the
    inner ORDER BY's); the aggregate joins them in that order."""
    text, params = rows
    limit_name = "json_page_size"
    assert limit_name not in params
    window = S("") if order is None else S("ORDER BY {}").format(order)
    if page_size is None:
        query = S(
            "SELECT count(*)::int8,"
            " convert_to(coalesce(string_agg(j, ',' ORDER BY rn), ''), 'UTF8')"
            " FROM (SELECT {row_json} AS j, row_number() OVER ({window}) AS rn"
            " FROM ({rows}) q) numbered"
        ).format(row_json=row_json, window=window, rows=text)
        return query, params
    params = {**params, limit_name: page_size}
    limit = sql.Placeholder(limit_name)
    last = [
        S(", max(k{i}) FILTER (WHERE rn = {limit})").format(i=S(str(i)), limit=limit)
        for i in range(len(keys))
    ]
    key_columns = [S(", {} AS k{}").format(key, S(str(i))) for i, key in enumerate(keys)]
    query = S(
        "SELECT count(*)::int8,"
        " convert_to(coalesce(string_agg(j, ',' ORDER BY rn) FILTER (WHERE rn <= {limit}), ''),"
        " 'UTF8'){last}"
        " FROM (SELECT {row_json} AS j{keys}, row_number() OVER ({window}) AS rn"
        " FROM ({rows}) q) numbered"
    ).format(
        limit=limit,
        last=S("").join(last),
        row_json=row_json,
        keys=S("").join(key_columns),
        window=window,
        rows=text,
    )
    return query, params


def splice(envelope: bytes, data: bytes) -> bytes:
    """The envelope orjson rendered with `DATA_PLACEHOLDER` where the data array goes,
    with the array in its place."""
    head, found, tail = envelope.partition(_PLACEHOLDER_JSON)
    if not found:
        raise ValueError("the envelope has no data placeholder")
    return b"".join((head, b"[", data, b"]", tail))


def _q(column: str) -> sql.Composable:
    return sql.Identifier("q", column)


#: `api.models.RawPoint` of a row of `api.queries.raw_page_query`
RAW_POINT = json_object(
    [
        ("time", json_time(_q("time"))),
        ("series_id", json_integer(_q("series_id"))),
        ("value", json_number(_q("value"))),
        ("quality", json_integer(_q("quality"))),
    ]
)

#: `api.models.AggregatePoint` of a row of `api.queries.rollup_page_query`
AGGREGATE_POINT = json_object(
    [
        ("time", json_time(_q("bucket"))),
        ("end", json_time(_q("bucket_end"))),
        ("count", json_integer(_q("count"))),
        ("good_count", json_integer(_q("good_count"))),
        ("suspect_count", json_integer(S("(q.count - q.good_count)"))),
        ("sum", json_number(_q("sum"))),
        ("mean", json_number(_q("mean"))),
        ("std", json_number(_q("std"))),
        ("min", json_number(_q("min"))),
        ("max", json_number(_q("max"))),
        ("first", json_number(_q("first"))),
        ("last", json_number(_q("last"))),
        ("coverage", json_number(_q("coverage"))),
    ]
)

#: `api.models.Latest` of a row of `api.queries.latest_query`
LATEST = json_object(
    [
        ("series_id", json_integer(_q("id"))),
        ("device_id", json_string(_q("device_id"))),
        ("site_id", json_string(_q("site_id"))),
        ("kind", json_string(_q("kind"))),
        ("metric", json_string(_q("metric"))),
        ("unit", json_string(_q("unit"))),
        ("time", json_time(_q("time"))),
        ("value", json_number(_q("value"))),
        ("quality", json_integer(_q("quality"))),
        ("aggregate", json_string(_q("aggregate"))),
    ]
)
