"""A page of Observations as JSON built by PostgreSQL (issue 17), for harvests.

A harvest reads Observations a thousand at a time; rendering each as a dict in
Python (`api.sensorthings.routes._render`) and encoding it cost more than the
query.  Here the page query compiled as usual (`compile.entity_query`, any
``$filter``, ``$orderby``, ``$select``, ``$skip``, keyset) is wrapped so that
PostgreSQL writes each Observation's JSON (`api.json_sql`) with the keys in the
order `_render` puts them; ``$resultFormat=dataArray`` the same way, an array per
Observation grouped by Datastream (`data_array_query`).  Expanded navigations keep
the Python path (`applies`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import orjson
from psycopg import sql

from api.json_sql import (
    json_number,
    json_object,
    json_raw,
    json_time,
    page_json_query,
    rfc3339,
)
from api.queries import Query
from api.sensorthings.compile import Layout
from api.sensorthings.model import OBSERVATION, QUALITY_NAMES, quality_element
from api.sensorthings.odata import QueryOptions

S = sql.SQL

#: a flag no QARTOD code uses, to render the template of an unknown flag's element
_PROBE_FLAG = 31_999
#: components of a dataArray when $select names none (18-088 §14.3.1)
DATA_ARRAY_COMPONENTS = (
    "id",
    "phenomenonTime",
    "resultTime",
    "result",
    "resultQuality",
    "parameters",
)


def applies(options: QueryOptions) -> bool:
    """Whether a collection of Observations with these options is served here."""
    return not options.expand


def _column(index: int) -> sql.Composable:
    return sql.Identifier("q", f"c{index}")


def _id_json(identifier: sql.Composable) -> sql.Composable:
    """An Observation's id as a JSON string (digits and a dash: nothing to escape)."""
    return S("'\"' || {} || '\"'").format(identifier)


def _phenomenon_time(column: sql.Composable) -> sql.Composable:
    """`model._time_or_interval`: an instant, or ``start/end`` for an aggregate."""
    start, end = S("{}[1]").format(column), S("{}[2]").format(column)
    return S(
        "CASE WHEN {start} IS NULL THEN 'null' WHEN {end} IS NULL THEN {instant}"
        " ELSE '\"' || {s} || '/' || {e} || '\"' END"
    ).format(start=start, end=end, instant=json_time(start), s=rfc3339(start), e=rfc3339(end))


def _result_quality(column: sql.Composable) -> sql.Composable:
    """`model.quality_element` of the flag: the very bytes orjson writes of it, per
    known flag, and for any other the same document around the flag's digits."""
    branches = [
        S("WHEN {} THEN {}").format(
            sql.Literal(flag), sql.Literal(orjson.dumps(quality_element(flag)).decode())
        )
        for flag in QUALITY_NAMES
    ]
    template = orjson.dumps(quality_element(_PROBE_FLAG)).decode().split(str(_PROBE_FLAG))
    flag_text = S("{}::text").format(column)
    pieces: list[sql.Composable] = []
    for index, part in enumerate(template):
        pieces += [flag_text, sql.Literal(part)] if index else [sql.Literal(part)]
    other = S(" || ").join(pieces)
    return S(
        "CASE WHEN {c} IS NULL THEN 'null' ELSE CASE {c} {branches} ELSE {other} END END"
    ).format(c=column, branches=S(" ").join(branches), other=other)


#: how each Observation property's JSON is written from its selected column
_PROPERTY_JSON: dict[str, Callable[[sql.Composable], sql.Composable]] = {
    "phenomenonTime": _phenomenon_time,
    "resultTime": json_time,
    "result": json_number,
    "resultQuality": _result_quality,
    "parameters": json_raw,
}


def _link(base: str, tail: str) -> tuple[sql.Composable, sql.Composable]:
    """The JSON text before and after an Observation's id in one of its links (the
    base escaped as orjson escapes it; the id is digits and a dash)."""
    head = orjson.dumps(f"{base}/Observations('").decode()[:-1]
    return sql.Literal(head), sql.Literal(orjson.dumps(f"'){tail}").decode()[1:])


def page_query(rows: Query, layout: Layout, base: str, page_size: int) -> Query:
    """The page of `rows` (an Observations query of `compile.entity_query`) as one row:
    found, the JSON of the page, and the id of its last row when more follow
    (`api.json_sql.page_json_query`)."""
    selection = layout.selection
    identifier = _column(0)
    fields: list[tuple[str, sql.Composable]] = []
    if selection.with_id:
        fields.append(("@iot.id", _id_json(identifier)))
    if selection.with_self_link:
        head, tail = _link(base, "")
        fields.append(("@iot.selfLink", S("{} || {} || {}").format(head, identifier, tail)))
    for position, prop in enumerate(selection.props, start=1):
        fields.append((prop.name, _PROPERTY_JSON[prop.name](_column(position))))
    for nav in selection.navs:
        head, tail = _link(base, f"/{nav.name}")
        fields.append(
            (f"{nav.name}@iot.navigationLink", S("{} || {} || {}").format(head, identifier, tail))
        )
    assert set(_PROPERTY_JSON) == set(OBSERVATION.props)  # a new property needs its JSON
    return page_json_query(rows, json_object(fields), page_size=page_size, keys=(identifier,))


def data_array_components(options: QueryOptions) -> list[str]:
    """The components of a dataArray: those $select names (``id`` for the id), in its
    order, or all of `DATA_ARRAY_COMPONENTS`."""
    if options.select is None:
        return list(DATA_ARRAY_COMPONENTS)
    return [
        "id" if name in ("id", "@iot.id") else name
        for name in options.select
        if name in ("id", "@iot.id") or name in OBSERVATION.props
    ]


def data_array_query(
    rows: Query, layout: Layout, base: str, page_size: int, components: Sequence[str]
) -> Query:
    """The page of `rows` in the Data Array encoding (18-088 §14.3.1), as one row like
    `page_query`'s: found, the JSON of the ``value`` array's items, the id of the last
    row when more follow.  An item per Datastream, in the order of its first
    Observation on the page, with its Observations' ``components`` as arrays in page
    order (`data_array_components`).
    ``rows`` selects every property (a dataArray row needs the id whatever
    ``$select`` says); ``components`` are the names to write, ``id`` for the id."""
    columns = {prop.name: _column(i) for i, prop in enumerate(layout.selection.props, start=1)}
    identifier = _column(0)
    values = [
        _id_json(identifier) if name == "id" else _PROPERTY_JSON[name](columns[name])
        for name in components
    ]
    row_json = S("'[' || {} || ']'").format(S(" || ',' || ").join(values)) if values else S("'[]'")
    link = orjson.dumps(f"{base}/Datastreams(").decode()[:-1]  # the opening quote kept
    head = '{"Datastream@iot.navigationLink":' + link
    names = orjson.dumps(list(components)).decode()
    middle = ')","components":' + names + ',"dataArray@iot.count":'
    text, params = rows
    limit_name = "json_page_size"
    assert limit_name not in params
    limit = sql.Placeholder(limit_name)
    query = S(
        "WITH numbered AS MATERIALIZED ("
        " SELECT {row_json} AS j, {id} AS k0, split_part({id}, '-', 1) AS series,"
        " row_number() OVER () AS rn FROM ({rows}) q),"
        " grouped AS ("
        " SELECT series, min(rn) AS first, count(*) AS n, string_agg(j, ',' ORDER BY rn) AS arr"
        " FROM numbered WHERE rn <= {limit} GROUP BY series)"
        " SELECT (SELECT count(*) FROM numbered)::int8,"
        " convert_to(coalesce(string_agg({head} || series || {middle} || n"
        " || ',\"dataArray\":[' || arr || ']}}', ',' ORDER BY first), ''), 'UTF8'),"
        " (SELECT k0 FROM numbered WHERE rn = {limit})"
        " FROM grouped"
    ).format(
        row_json=row_json,
        id=identifier,
        rows=text,
        limit=limit,
        head=sql.Literal(head),
        middle=sql.Literal(middle),
    )
    return query, {**params, limit_name: page_size}
