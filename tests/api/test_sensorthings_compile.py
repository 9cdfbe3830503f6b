"""The SensorThings $filter parser and the query builders, without a database: the
syntax tree of OData expressions, the SQL and parameters they compile to (values
only ever as parameters), and the errors that name what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from psycopg import sql

from api.sensorthings import geo
from api.sensorthings.compile import (
    Keyset,
    Params,
    Where,
    compile_filter,
    entity_query,
    format_id,
    keyset_direction,
    observation_id,
    parse_id,
)
from api.sensorthings.model import ENTITIES, OBSERVATION
from api.sensorthings.odata import (
    MAX_SKIP,
    MAX_TOP,
    Binary,
    Call,
    Literal,
    Negate,
    Not,
    ODataError,
    Path,
    parse_expand,
    parse_filter,
    parse_options,
    parse_orderby,
    parse_select,
)


def text(composable: sql.Composable) -> str:
    return composable.as_string(None)


def compiled(expression: str, entity_set: str = "Things") -> tuple[str, str, dict[str, object]]:
    """(row conditions, series conditions, parameters) of a filter."""
    params = Params()
    where = Where()
    compile_filter(parse_filter(expression), ENTITIES[entity_set], params, where)
    rows = " AND ".join(text(c) for c in where.rows)
    series = " AND ".join(text(c) for c in where.series)
    return rows, series, params.values


# ---------------------------------------------------------------------- parsing


def test_precedence_and_or_not() -> None:
    tree = parse_filter("a eq 1 or not b eq 2 and c eq 3")
    assert tree == Binary(
        "or",
        Binary("eq", Path(("a",)), Literal(1, "number")),
        Binary(
            "and",
            Not(Binary("eq", Path(("b",)), Literal(2, "number"))),
            Binary("eq", Path(("c",)), Literal(3, "number")),
        ),
    )


def test_parentheses_arithmetic_and_negation() -> None:
    tree = parse_filter("(result add 1) mul 2 gt -3.5 and -result lt 0")
    assert tree == Binary(
        "and",
        Binary(
            "gt",
            Binary(
                "mul", Binary("add", Path(("result",)), Literal(1, "number")), Literal(2, "number")
            ),
            Literal(-3.5, "number"),
        ),
        Binary("lt", Negate(Path(("result",))), Literal(0, "number")),
    )


def test_literals() -> None:
    assert parse_filter("name eq 'O''Brien'") == Binary(
        "eq", Path(("name",)), Literal("O'Brien", "string")
    )
    moment = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    for written in ("2024-05-01T12:30:00Z", "2024-05-01T14:30:00+02:00", "2024-05-01T12:30Z"):
        tree = parse_filter(f"phenomenonTime ge {written}")
        assert isinstance(tree, Binary)
        assert tree.right == Literal(moment, "datetime")
    day = parse_filter("phenomenonTime lt 2024-05-02")
    assert isinstance(day, Binary)
    assert day.right == Literal(datetime(2024, 5, 2, tzinfo=UTC), "datetime")
    nanos = parse_filter("phenomenonTime lt 2024-05-02T00:00:00.123456789Z")
    assert isinstance(nanos, Binary)
    assert isinstance(nanos.right, Literal)
    assert nanos.right.value == datetime(2024, 5, 2, 0, 0, 0, 123456, tzinfo=UTC)
    assert parse_filter("x eq true or y eq null") == Binary(
        "or",
        Binary("eq", Path(("x",)), Literal(True, "boolean")),
        Binary("eq", Path(("y",)), Literal(None, "null")),
    )
    assert parse_filter("x eq 1e3") == Binary("eq", Path(("x",)), Literal(1000.0, "number"))


def test_paths_and_functions() -> None:
    assert parse_filter("Datastream/ObservedProperty/name eq 'PM2.5'") == Binary(
        "eq", Path(("Datastream", "ObservedProperty", "name")), Literal("PM2.5", "string")
    )
    assert parse_filter("substringof('sentrum', tolower(name))") == Call(
        "substringof", (Literal("sentrum", "string"), Call("tolower", (Path(("name",)),)))
    )
    assert parse_filter("@iot.id eq 3") == Binary("eq", Path(("@iot.id",)), Literal(3, "number"))


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("", "empty"),
        ("name eq", "expected a value at the end"),
        ("name eq 'x", "not closed"),
        ("(name eq 'x'", "expected ')'"),
        ("name eq 'x')", "unexpected ')' at position 11"),
        ("name eq eq", "operator 'eq'"),
        ("name eq 'a' eq 'b'", "chain"),
        ("nosuch(name)", "unknown function 'nosuch'"),
        ("startswith(name)", "startswith() takes 2 arguments, not 1"),
        ("name eq #", "unexpected character '#' at position 8"),
        ("Thing/'x' eq 1", "property name after '/'"),
        ("x gt 2024-13-01T00:00:00Z", "not a valid ISO 8601"),
    ],
)
def test_syntax_errors_say_where(expression: str, says: str) -> None:
    with pytest.raises(ODataError) as raised:
        parse_filter(expression)
    assert raised.value.option == "$filter"
    assert says in raised.value.message


def test_other_options() -> None:
    orderby = parse_orderby("name desc, id")
    assert [(str(o.path), o.descending) for o in orderby] == [("name", True), ("id", False)]
    assert parse_select("name, id,name") == ("name", "id")
    (item,) = parse_expand("Datastreams($select=name;$top=5;$filter=startswith(name, 'a;b'))")
    assert item.navigation == "Datastreams"
    assert item.options.select == ("name",)
    assert item.options.top == 5
    assert isinstance(item.options.filter, Call)
    (nested,) = parse_expand("Datastreams/ObservedProperty,Datastreams/Sensor($select=id)")
    assert [e.navigation for e in nested.options.expand] == ["ObservedProperty", "Sensor"]
    options = parse_options({"$top": "5", "$skip": "10", "$count": "true"})
    assert (options.top, options.skip, options.count, options.page_size) == (5, 10, True, 5)
    assert parse_options({}).page_size == 100


@pytest.mark.parametrize(
    ("values", "option", "says"),
    [
        ({"$top": "-1"}, "$top", "non-negative"),
        ({"$skip": "many"}, "$skip", "non-negative"),
        # digits int() does not take, and a skip past PostgreSQL's bigint: 400s, not 500s
        ({"$top": "²"}, "$top", "non-negative"),
        ({"$skip": "²"}, "$skip", "non-negative"),
        ({"$skip": "99999999999999999999"}, "$skip", f"limit of {MAX_SKIP}"),
        (
            {"$expand": "Datastreams($skip=99999999999999999999)"},
            "$expand Datastreams: $skip",
            "limit",
        ),
        ({"$count": "maybe"}, "$count", "true or false"),
        ({"$orderby": "name up"}, "$orderby", "asc or desc"),
        ({"$select": "na me"}, "$select", "not a property"),
        ({"$expand": "A/B/C/D"}, "$expand", "deeper"),
        ({"$expand": "Datastreams($top)"}, "$expand", "$option=value"),
        ({"$resultFormat": "csv"}, "$resultFormat", "dataArray"),
        ({"$expand": "Observations($skiptoken=a1.1)"}, "$expand Observations: $skiptoken", "whole"),
        ({"$search": "x"}, "$search", "unknown"),
    ],
)
def test_option_errors(values: dict[str, str], option: str, says: str) -> None:
    with pytest.raises(ODataError) as raised:
        parse_options(values)
    assert raised.value.option == option
    assert says in raised.value.message


# ---------------------------------------------------------------------- compiling


def test_values_are_parameters_never_sql_text() -> None:
    rows, _, params = compiled("name eq 'x''); DROP TABLE sites; --'")
    assert "DROP" not in rows
    assert "x'); DROP TABLE sites; --" in params.values()
    assert rows == "(th.name = %(p0)s::text)"


def test_comparisons_functions_and_logic() -> None:
    rows, _, params = compiled("startswith(name, 'N') and not (id eq 'a' or id ne 'b')")
    assert rows == (
        "(starts_with(th.name, %(p0)s::text) AND (NOT ((th.id = %(p1)s::text)"
        " OR (th.id <> %(p2)s::text))))"
    )
    assert [params[k] for k in ("p0", "p1", "p2")] == ["N", "a", "b"]
    rows, _, _ = compiled("endswith(name, 'x')")
    assert rows == "(right(th.name, length(%(p0)s::text)) = %(p0)s::text)"
    rows, _, _ = compiled("substringof('x', name) and contains(name, 'y')")
    assert "strpos(th.name, %(p0)s::text) > 0" in rows
    assert "strpos(th.name, %(p1)s::text) > 0" in rows


def test_null_json_and_arithmetic() -> None:
    rows, _, _ = compiled("description eq null")
    assert rows.startswith("(th.name || ' (' || replace(th.kind, '_', ' ')")
    assert rows.endswith(" IS NULL)")
    rows, _, params = compiled("properties/road eq 'E6'")
    assert "#> %(p0)s::text[]) = to_jsonb(%(p1)s::text))" in rows
    assert params["p0"] == ["road"]
    assert params["p1"] == "E6"
    rows, _, _ = compiled("result div 0 gt 1 and result mod 2 eq 1", "Observations")
    assert "(ob.result / nullif(%(p0)s::int8, 0))" in rows
    assert "mod((ob.result)::numeric, nullif(%(p2)s::int8, 0)::numeric)" in rows


def test_time_conditions_on_observations_stay_on_the_readings_key() -> None:
    rows, series, params = compiled(
        "Datastream/id eq 5 and phenomenonTime ge 2024-05-01T00:00:00Z"
        " and phenomenonTime lt 2024-05-02T00:00:00Z",
        "Observations",
    )
    # the time bounds compare the readings' own column (index and chunk exclusion)...
    assert rows == (
        "(ob.phenomenon_time >= %(p1)s::timestamptz) AND (ob.phenomenon_time < %(p2)s::timestamptz)"
    )
    # ...and the Datastream condition picks series before any reading is read
    assert series == "(ds.id = %(p0)s::int8)"
    assert params["p1"] == datetime(2024, 5, 1, tzinfo=UTC)


def test_navigation_becomes_exists() -> None:
    rows, _, _ = compiled("Thing/name eq 'x'", "Datastreams")
    assert rows == (
        "EXISTS (SELECT 1 FROM sites th WHERE th.id = ds_d.site_id AND (th.name = %(p0)s::text))"
    )
    rows, _, _ = compiled("Datastreams/ObservedProperty/id eq 'pm25'", "Things")
    assert rows.startswith("EXISTS (SELECT 1 FROM series ds")
    assert (
        "EXISTS (SELECT 1 FROM metrics op WHERE op.key = ds.metric AND (op.key = %(p0)s::text))"
        in rows
    )
    # an Observation's feature is its series' site: decided per series, not per reading
    rows, series, _ = compiled("FeatureOfInterest/name eq 'x'", "Observations")
    assert series.startswith('EXISTS (SELECT 1 FROM sites "fo" WHERE "fo".id = ds_d.site_id')
    assert rows == ""
    rows, series, _ = compiled("FeatureOfInterest/name eq 'x' or result gt 1", "Observations")
    assert rows.startswith('(EXISTS (SELECT 1 FROM sites "fo" WHERE "fo".id = ob.site_id')


@pytest.mark.parametrize(
    ("expression", "entity_set", "says"),
    [
        ("colour eq 'red'", "Things", "no property 'colour'"),
        ("name gt 3 add 'x'", "Things", "add needs numbers"),
        ("result eq true", "Observations", "cannot compare"),
        ("name lt null", "Things", "null can only be compared"),
        ("Thing eq 'x'", "Datastreams", "navigation property"),
        ("Thing/name eq name", "Datastreams", "cannot mix"),
        ("Observations/result gt 1", "Datastreams", "through Observations"),
        ("name/first eq 'x'", "Things", "no sub-properties"),
        ("name", "Things", "is not a condition"),
        ("year(name) eq 2024", "Things", "needs a date-time"),
        ("length(result) eq 1", "Observations", "needs text"),
    ],
)
def test_type_and_name_errors(expression: str, entity_set: str, says: str) -> None:
    with pytest.raises(ODataError) as raised:
        compiled(expression, entity_set)
    assert says in raised.value.message


def test_literal_coercion_for_ids() -> None:
    rows, _, params = compiled("id eq '5'", "Datastreams")
    assert rows == "(ds.id = %(p1)s::int8)"
    assert params["p1"] == 5
    # a number against text, and ordering against a quoted number: as text, code
    # points (FROST-Server, ets-sta10)
    rows, _, params = compiled("id eq 5", "Things")
    assert rows == '(th.id COLLATE "C" = (%(p0)s::int8)::text)'
    rows, _, params = compiled("result gt '3'", "Observations")
    assert rows == '((ob.result)::text COLLATE "C" > %(p0)s::text)'


def test_entity_query_pages_observations_per_series() -> None:
    params = Params()
    where = Where()
    options = parse_options({"$top": "10", "$skip": "20", "$filter": "result gt 1"})
    (query, values), layout = entity_query(OBSERVATION, options, where, params)
    statement = text(query)
    # per series: the filter, the order and top + skip + 1 rows inside the LATERAL
    assert statement.count("CROSS JOIN LATERAL") == 2
    assert (
        "FROM readings r WHERE r.series_id = ds.id) ob WHERE (ob.result > %(p0)s::int8)"
        in statement
    )
    assert "ORDER BY ob.phenomenon_time ASC LIMIT 31" in statement
    assert statement.endswith("LIMIT %(p1)s OFFSET %(p2)s")
    assert (values["p1"], values["p2"]) == (11, 20)
    assert [p.name for p in layout.selection.props] == [
        "phenomenonTime",
        "resultTime",
        "result",
        "resultQuality",
        "parameters",
    ]
    # traffic series read only the hourly rollups, readings only for the rest
    assert "ds_m.domain = ANY(%(sta_private)s)" in statement
    assert "ds_m.domain <> ALL(%(sta_private)s)" in statement
    assert values["sta_private"] == ["traffic"]


def test_ids() -> None:
    things, datastreams = ENTITIES["Things"], ENTITIES["Datastreams"]
    assert parse_id(things, "'narvik-sentrum'") == "narvik-sentrum"
    assert parse_id(things, "'Not An Id'") is None
    assert parse_id(datastreams, "12") == parse_id(datastreams, "'12'") == 12
    assert parse_id(datastreams, "99999999999") is None
    assert format_id(things, "narvik-sentrum") == "'narvik-sentrum'"
    assert format_id(datastreams, 12) == "12"
    moment = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    key = observation_id(7, moment)
    assert key == "7-1714564800123456"
    assert parse_id(OBSERVATION, f"'{key}'") == (7, moment)


# ---------------------------------------------------------------------- paging, geometry


def test_top_beyond_the_cap_is_capped_not_refused() -> None:
    assert parse_options({"$top": str(MAX_TOP * 3)}).top == MAX_TOP
    assert parse_options({"$expand": "Datastreams($top=99999)"}).expand[0].options.top == MAX_TOP


def test_keyset_tokens_round_trip_and_refuse_strangers() -> None:
    after = Keyset(True, 1714557600000000, 12)
    assert Keyset.parse(after.token()) == after
    for token in ("", "x1.2", "a1", "a1.99999999999", "a1.2; DROP", "d" + "9" * 20 + ".1"):
        with pytest.raises(ODataError) as raised:
            Keyset.parse(token)
        assert raised.value.option == "$skiptoken"
    params = Params()
    where = Where()
    after.condition(params, where)
    assert text(where.rows[0]) == (
        "(ob.phenomenon_time <= %(p0)s AND (ob.phenomenon_time < %(p0)s OR ob.series_id > %(p1)s))"
    )


def test_keyset_applies_to_observations_by_time_only() -> None:
    assert keyset_direction(OBSERVATION, parse_options({})) is False
    desc = parse_options({"$orderby": "phenomenonTime desc"})
    assert keyset_direction(OBSERVATION, desc) is True
    assert keyset_direction(OBSERVATION, parse_options({"$orderby": "result"})) is None
    assert keyset_direction(ENTITIES["Things"], parse_options({})) is None


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("POINT (17.43 68.44)", geo.Point(17.43, 68.44)),
        ("point(-122, 43)", geo.Point(-122, 43)),  # the comma of STA's own example
        ("SRID=4326;POINT(1 2)", geo.Point(1, 2)),
        ("LINESTRING (30 10, 10 30, 40 40)", geo.LineString(((30, 10), (10, 30), (40, 40)))),
        (
            "POLYGON ((0 0, 4 0, 4 4, 0 4, 0 0), (1 1, 2 1, 2 2, 1 2, 1 1))",
            geo.Polygon(
                (
                    ((0, 0), (4, 0), (4, 4), (0, 4), (0, 0)),
                    ((1, 1), (2, 1), (2, 2), (1, 2), (1, 1)),
                )
            ),
        ),
    ],
)
def test_wkt_literals(literal: str, expected: geo.Geometry) -> None:
    assert geo.parse_wkt(literal) == expected
    assert geo.parse_wkt(geo.wkt(expected)) == expected


@pytest.mark.parametrize(
    ("literal", "says"),
    [
        ("POINT (1)", "coordinate pair"),
        ("POINT Z (1 2 3)", "2D"),
        ("POLYGON ((0 0, 1 0, 1 1))", "at least 4 points"),
        ("POLYGON ((0 0, 1 0, 1 1, 0 2))", "end where it starts"),
        ("LINESTRING (1 1, 1 1)", "two distinct"),
        ("MULTIPOINT ((1 2))", "not supported"),
        ("SRID=3857;POINT(1 2)", "SRID=3857"),
        ("POINT (nan 1)", "coordinate pair"),
        ("circle", "not WKT"),
    ],
)
def test_bad_wkt_is_a_filter_error(literal: str, says: str) -> None:
    with pytest.raises(ODataError) as raised:
        parse_filter(f"st_within(location, geography'{literal}')")
    assert raised.value.option == "$filter"
    assert says in raised.value.message


def test_geospatial_functions_compile_to_parameters() -> None:
    rows, _, params = compiled(
        "st_within(location, geography'POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))')", "Locations"
    )
    assert '"lo".lon' in rows
    assert '"lo".lat' in rows
    assert [0.0, 1.0, 1.0, 0.0] in params.values()  # the edges' start x, as one array
    for bad, says in (
        ("geo.distance(name, geography'POINT(1 2)') lt 1", "needs geometries"),
        (
            "st_intersects(geography'LINESTRING(0 0, 1 1)', geography'POLYGON((0 0, 1 0, 1 1,"
            " 0 1, 0 0))')",
            "must be a point",
        ),
        ("st_relate(location, geography'POINT(1 2)', 'T*')", "DE-9IM"),
        ("geo.length(location) gt 1", "LINESTRING"),
    ):
        with pytest.raises(ODataError) as raised:
            compiled(bad, "Locations")
        assert says in raised.value.message, bad


def test_datastream_times_compare_as_intervals() -> None:
    rows, _, _ = compiled("phenomenonTime gt 2024-01-01", "Datastreams")
    assert rows.startswith("(CASE WHEN ds_m.domain = ANY(%(sta_private)s) THEN (SELECT ro.bucket")
    assert rows.endswith("> %(p0)s::timestamptz)")
    before, _, _ = compiled("phenomenonTime lt 2024-01-01", "Datastreams")
    assert "DESC LIMIT 1" in before  # the end of the interval: the last reading
    inside, _, _ = compiled("2024-01-01T00:00:00Z eq resultTime", "Datastreams")
    assert " <= %(p0)s::timestamptz AND %(p0)s::timestamptz <= (" in inside
