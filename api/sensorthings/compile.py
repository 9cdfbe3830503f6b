"""SensorThings query options compiled to SQL: plain functions returning ``(query,
params)``, unit-tested without a database (tests/api/test_sensorthings_compile.py).

Values from the request are always parameters (`Params`); identifiers and the
fixed SQL of `api.sensorthings.model` are the only SQL text.  A ``$filter`` is
type-checked against the entity before any SQL exists, so a query that reaches the
database is well-typed: mistakes are `ODataError`s (400), never database errors.

Navigation in ``$filter`` (``Thing/name eq 'x'``, ``Datastream/ObservedProperty/name
eq 'PM2.5'``) becomes ``EXISTS`` over the related entity, one level per hop, which
for a to-many navigation is OData's implicit "any".  On Observations, top-level
``and`` terms that only look at the Datastream are applied to the series before any
reading is read.

Geospatial functions are `api.sensorthings.geo`'s; a comparison of a time interval
(Datastream phenomenonTime and resultTime) with an instant follows 18-088 §9.3.3.5.1
(`_interval_compare`).

Paging through Observations in the default order (or by phenomenonTime alone) is by a
keyset: the nextLink carries the last row's (phenomenonTime, Datastream id) as
``$skiptoken`` (`Keyset`), so the next page starts right after it however many rows
arrived meanwhile, and a deep page costs what the first does.

Observations are read per series (`observation_rows`): for each series the readings
(or, for aggregate-only series, the hourly rollups) under a ``LATERAL`` join, with the
filter, order and page limit inside, so a page is index probes of the readings key
(series_id, time) — time conditions bound the scan and let TimescaleDB exclude
chunks — and never a sort of the whole table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from psycopg import sql
from psycopg.types.json import Jsonb

from api.sensorthings import geo
from api.sensorthings.model import (
    BASE_PARAMS,
    ENTITIES,
    FAIL,
    FEATURE,
    OBSERVATION,
    OBSERVATION_COLUMNS,
    PRIVATE,
    READINGS_ROWS,
    ROLLUP_ROWS,
    SERIES_FROM,
    Entity,
    Nav,
    Prop,
    PropType,
)
from api.sensorthings.odata import (
    COMPARISONS,
    Binary,
    Call,
    Negate,
    Node,
    Not,
    ODataError,
    OrderBy,
    Path,
    QueryOptions,
    paths_in,
)
from api.sensorthings.odata import Literal as ODataLiteral

Query = tuple[sql.SQL | sql.Composed, dict[str, Any]]
S = sql.SQL

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Params:
    """Named parameters of one query: ``add`` returns the placeholder of a value.
    ``base`` is the service root URL, for the links some properties hold."""

    def __init__(self, base: str = "") -> None:
        self.values: dict[str, Any] = dict(BASE_PARAMS)
        self.values["sta_base"] = base
        self._count = 0

    def add(self, value: Any) -> sql.Placeholder:
        name = f"p{self._count}"
        self._count += 1
        self.values[name] = value
        return sql.Placeholder(name)


# ---------------------------------------------------------------------- ids


def parse_id(entity: Entity, text: str) -> Any:
    """The key inside ``Set(…)``: quoted ``'narvik-sentrum'`` or bare ``12``; None
    when no such entity can exist (the caller answers 404)."""
    key = text.strip()
    if len(key) >= 2 and key[0] == key[-1] == "'":
        key = key[1:-1].replace("''", "'")
    if not re.fullmatch(entity.id_pattern, key):
        return None
    if entity.id_is_int:
        number = int(key)
        return number if number <= 2**31 - 1 else None
    if entity is OBSERVATION:
        series, micros = key.split("-")
        if int(series) > 2**31 - 1:
            return None
        try:
            return int(series), _EPOCH + timedelta(microseconds=int(micros))
        except OverflowError:
            return None
    return key


def format_id(entity: Entity, value: Any) -> str:
    """The key as it goes inside ``Set(…)`` in links: integers bare, strings quoted."""
    if entity.id_is_int:
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def observation_id(series_id: int, moment: datetime) -> str:
    delta = moment - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{series_id}-{micros}"


# ---------------------------------------------------------------------- conditions


@dataclass(slots=True)
class Where:
    """Conditions on an entity's rows.  For Observations, ``series`` conditions apply
    to the series (aliases ``ds``, ``ds_d``, ``ds_m``) before readings are read, and
    ``rows`` to the observation rows (alias ``ob``); elsewhere both simply apply."""

    rows: list[sql.Composable] = field(default_factory=list)
    series: list[sql.Composable] = field(default_factory=list)

    def all(self) -> list[sql.Composable]:
        return [*self.series, *self.rows]


def key_condition(entity: Entity, key: str, rhs: sql.Composable, where: Where) -> None:
    """``<entity key> <rhs>`` (rhs like ``= %s`` or ``IN (…)``), where it is cheapest."""
    branch_keys: dict[str, sql.Composable] = entity.extra.get("branch_keys", {})
    if key in branch_keys:
        where.series.append(S("{} {}").format(branch_keys[key], rhs))
    else:
        where.rows.append(S("{} {}").format(entity.keys[key], rhs))


def id_condition(entity: Entity, key: Any, params: Params, where: Where) -> None:
    if entity is OBSERVATION:
        series_id, moment = key
        where.series.append(S("ds.id = {}").format(params.add(series_id)))
        where.rows.append(S("ob.phenomenon_time = {}").format(params.add(moment)))
    else:
        where.rows.append(S("{} = {}").format(entity.id_expr, params.add(key)))


# ---------------------------------------------------------------------- $filter

ValueType = PropType | Literal["null"]


@dataclass(frozen=True, slots=True)
class Typed:
    expr: sql.Composable
    type: ValueType
    text: sql.Composable | None = None  # a JSON value as text (#>>), for string functions
    point: tuple[sql.Composable, sql.Composable] | None = None  # a GeoJSON point's lon, lat
    interval: tuple[sql.Composable, sql.Composable] | None = None  # a time interval's ends


_SQL_OPERATORS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_STRING_FUNCTIONS = frozenset({"substringof", "contains", "startswith", "endswith"})
_DATE_PARTS = {"year": "year", "month": "month", "day": "day", "hour": "hour", "minute": "minute"}
_MIRRORED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
_GEO_FUNCTIONS = geo.RELATIONS | {"geo.distance", "geo.length", "st_relate"}


def _interval_compare(
    op: str, interval: tuple[sql.Composable, sql.Composable], moment: sql.Composable
) -> sql.Composable:
    """An interval against an instant, as 18-088 §9.3.3.5.1 has it: the instant is an
    interval of no length, ``gt``/``lt`` are after/before (Table 23), ``ge``/``le``
    compare both ends; ``eq`` holds when the instant lies in the interval, ends
    included, as FROST-Server does (an instant cannot equal a longer interval)."""
    start, end = interval
    if op == "eq":
        return S("({s} <= {t} AND {t} <= {e})").format(s=start, e=end, t=moment)
    if op == "ne":
        return S("({t} < {s} OR {t} > {e})").format(s=start, e=end, t=moment)
    if op in ("gt", "ge"):
        return S("({} {} {})").format(start, S(_SQL_OPERATORS[op]), moment)
    return S("({} <= {})").format(end, moment)  # lt (before) and le: the end is not later


def _strip_first(node: Node, navigation: str) -> Node:
    """The tree with ``navigation/`` taken off the front of every path through it."""
    match node:
        case Path(segments=segments):
            return Path(segments[1:]) if segments[0] == navigation else node
        case Call(name=name, args=args):
            return Call(name, tuple(_strip_first(a, navigation) for a in args))
        case Binary(op=op, left=left, right=right):
            return Binary(op, _strip_first(left, navigation), _strip_first(right, navigation))
        case Not(operand=operand):
            return Not(_strip_first(operand, navigation))
        case Negate(operand=operand):
            return Negate(_strip_first(operand, navigation))
        case _:
            return node


def _describe(node: Node) -> str:
    match node:
        case Path():
            return str(node)
        case ODataLiteral(kind="string", value=value):
            return repr(value)
        case ODataLiteral(value=value, kind=kind):
            if kind == "null":
                return "null"
            return str(value).lower() if kind == "boolean" else str(value)
        case Call(name=name):
            return f"{name}(…)"
        case _:
            return "the expression"


class FilterCompiler:
    """Compiles a ``$filter`` tree to a boolean SQL expression over one entity."""

    def __init__(self, params: Params, option: str = "$filter") -> None:
        self.params = params
        self.option = option

    def error(self, message: str) -> ODataError:
        return ODataError(self.option, message)

    # -- booleans

    def condition(self, node: Node, entity: Entity) -> sql.Composable:
        match node:
            case Binary(op="and" | "or", left=left, right=right):
                joiner = S(" AND ") if node.op == "and" else S(" OR ")
                return S("({})").format(
                    joiner.join([self.condition(left, entity), self.condition(right, entity)])
                )
            case Not(operand=operand):
                return S("(NOT {})").format(self.condition(operand, entity))
            case _:
                return self.leaf(node, entity)

    def leaf(self, node: Node, entity: Entity) -> sql.Composable:
        """A comparison or boolean function; through navigation, wrapped in EXISTS."""
        navigations: list[str] = []
        own: list[Path] = []
        for path in paths_in(node):
            if path.segments[0] in entity.navs:
                if len(path.segments) == 1:
                    raise self.error(
                        f"{path} is a navigation property of {entity.set_name}; name one of "
                        f"its properties, e.g. {path}/name"
                    )
                navigations.append(path.segments[0])
            else:
                own.append(path)
        if not navigations:
            return self.boolean(node, entity)
        if own or len(set(navigations)) > 1:
            mixed = ", ".join(str(p) for p in paths_in(node))
            raise self.error(
                f"one comparison cannot mix properties of different entities ({mixed})"
            )
        nav = entity.navs[navigations[0]]
        target = ENTITIES[nav.target]
        if target is OBSERVATION:
            raise self.error(
                "filtering through Observations is not supported; query the Observations "
                "and filter on their Datastream instead"
            )
        inner = self.leaf(_strip_first(node, nav.name), target)
        return S("EXISTS (SELECT 1 FROM {} WHERE {} = {} AND {})").format(
            target.source, target.keys[nav.target_key], entity.keys[nav.parent_key], inner
        )

    def boolean(self, node: Node, entity: Entity) -> sql.Composable:
        value = self.value(node, entity)
        if value.type == "boolean":
            return value.expr
        if value.type == "json":
            return S("({} = 'true'::jsonb)").format(value.expr)
        raise self.error(
            f"{_describe(node)} is not a condition: compare it with eq, ne, gt, ge, lt or le"
        )

    # -- values

    def value(self, node: Node, entity: Entity) -> Typed:
        match node:
            case ODataLiteral():
                return self.literal(node)
            case Path():
                return self.path(node, entity)
            case Negate(operand=operand):
                return Typed(S("(- {})").format(self.number(operand, entity, "-")), "number")
            case Binary(op=op, left=left, right=right) if op in COMPARISONS:
                return Typed(self.compare(op, left, right, entity), "boolean")
            case Binary(op="and" | "or") | Not():
                return Typed(self.condition(node, entity), "boolean")
            case Binary(op=op, left=left, right=right):
                return self.arithmetic(op, left, right, entity)
            case Call():
                return self.call(node, entity)
        raise self.error("unsupported expression")  # pragma: no cover

    def literal(self, node: ODataLiteral) -> Typed:
        if node.kind == "null":
            return Typed(S("NULL"), "null")
        if node.kind == "geometry":
            assert isinstance(node.value, geo.Point | geo.LineString | geo.Polygon)
            return Typed(
                S("{}::jsonb").format(self.params.add(Jsonb(geo.geojson(node.value)))), "json"
            )
        if node.kind == "string":
            return Typed(S("{}::text").format(self.params.add(node.value)), "string")
        if node.kind == "number":
            cast = S("::int8") if isinstance(node.value, int) else S("::float8")
            if isinstance(node.value, int) and abs(node.value) >= 2**63:
                cast = S("::numeric")
            return Typed(self.params.add(node.value) + cast, "number")
        if node.kind == "boolean":
            return Typed(S("TRUE") if node.value else S("FALSE"), "boolean")
        return Typed(S("{}::timestamptz").format(self.params.add(node.value)), "datetime")

    def path(self, node: Path, entity: Entity) -> Typed:
        name, *rest = node.segments
        if name in ("id", "@iot.id"):
            if rest:
                raise self.error(f"{name} has no sub-properties")
            return Typed(entity.id_expr, "number" if entity.id_is_int else "string")
        prop = entity.props.get(name)
        if prop is None:
            if name in entity.navs:
                raise self.error(
                    f"one comparison cannot mix properties of different entities ({node})"
                )
            known = ", ".join(["id", *entity.props, *entity.navs])
            raise self.error(f"{entity.set_name} have no property {name!r} (known: {known})")
        if not prop.filterable:
            raise self.error(f"{entity.set_name} cannot be filtered or ordered on {name}")
        if not rest:
            if prop.type == "json":
                return Typed(prop.expr, "json", S("({})::text").format(prop.expr), point=prop.point)
            return Typed(prop.expr, prop.type, interval=prop.interval)
        if prop.type != "json":
            raise self.error(f"{name} of {entity.set_name} has no sub-properties ({node})")
        keys = self.params.add(list(rest))
        return Typed(
            S("({} #> {}::text[])").format(prop.expr, keys),
            "json",
            S("({} #>> {}::text[])").format(prop.expr, keys),
        )

    def number(self, node: Node, entity: Entity, what: str) -> sql.Composable:
        value = self.value(node, entity)
        if value.type == "json":
            raise self.error(f"{what} needs numbers; {_describe(node)} is a JSON value")
        if value.type != "number":
            raise self.error(f"{what} needs numbers; {_describe(node)} is a {value.type}")
        return value.expr

    def text(self, node: Node, entity: Entity, what: str) -> sql.Composable:
        value = self.value(node, entity)
        if value.type == "string":
            return value.expr
        if value.type == "json" and value.text is not None:
            return value.text
        raise self.error(f"{what} needs text; {_describe(node)} is a {value.type}")

    def datetime_(self, node: Node, entity: Entity, what: str) -> sql.Composable:
        value = self.value(node, entity)
        if value.type != "datetime":
            raise self.error(f"{what} needs a date-time; {_describe(node)} is a {value.type}")
        return value.expr

    def arithmetic(self, op: str, left: Node, right: Node, entity: Entity) -> Typed:
        a = self.number(left, entity, op)
        b = self.number(right, entity, op)
        if op == "div":  # no division by zero reaches the database: x div 0 is null
            return Typed(S("({} / nullif({}, 0))").format(a, b), "number")
        if op == "mod":
            return Typed(S("mod(({})::numeric, nullif({}, 0)::numeric)").format(a, b), "number")
        symbol = {"add": "+", "sub": "-", "mul": "*"}[op]
        return Typed(S("({} {} {})").format(a, S(symbol), b), "number")

    def geometry(self, node: Node, entity: Entity, what: str) -> geo.SqlPoint | geo.Geometry:
        """A function's geometry argument: a point property (its columns), a POINT
        literal (as parameters), or a LINESTRING or POLYGON literal."""
        if isinstance(node, ODataLiteral) and node.kind == "geometry":
            value = node.value
            if isinstance(value, geo.Point):
                return geo.SqlPoint(
                    S("{}::float8").format(self.params.add(value.x)),
                    S("{}::float8").format(self.params.add(value.y)),
                )
            assert isinstance(value, geo.LineString | geo.Polygon)
            return value
        typed = self.value(node, entity)
        if typed.point is None:
            raise self.error(
                f"{what} needs geometries: a location, feature or observedArea, or a "
                f"literal like geography'POINT (17.43 68.44)'; {_describe(node)} is not one"
            )
        return geo.SqlPoint(*typed.point)

    def geo_call(self, name: str, args: tuple[Node, ...], entity: Entity) -> Typed:
        if name == "geo.length":
            (line,) = args
            if isinstance(line, ODataLiteral) and isinstance(line.value, geo.LineString):
                return Typed(S("{}::float8").format(self.params.add(line.value.length)), "number")
            raise self.error("geo.length needs a LINESTRING literal: geography'LINESTRING (…)'")
        first = self.geometry(args[0], entity, name)
        second = self.geometry(args[1], entity, name)
        if isinstance(first, geo.SqlPoint):
            point, other, point_first = first, second, True
        elif isinstance(second, geo.SqlPoint):
            point, other, point_first = second, first, False
        else:
            raise self.error(
                f"{name}: one of the two geometries must be a point (a location, feature or "
                "observedArea, or a POINT): this service relates points to lines and polygons"
            )
        add = self.params.add
        if name == "geo.distance":
            return Typed(geo.distance(point, other, add), "number")
        if name == "st_relate":
            pattern = args[2]
            if not (
                isinstance(pattern, ODataLiteral)
                and isinstance(pattern.value, str)
                and geo.DE9IM_PATTERN.match(pattern.value.upper())
            ):
                raise self.error(
                    "st_relate needs a DE-9IM pattern of 9 characters from T F * 0 1 2, "
                    "e.g. 'T********'"
                )
            matrix = geo.matrix(point, other, add, point_first=point_first)
            return Typed(
                geo.relate(S("{}::text").format(add(pattern.value.upper())), matrix), "boolean"
            )
        return Typed(geo.relation(name, point, other, add, point_first=point_first), "boolean")

    def call(self, node: Call, entity: Entity) -> Typed:
        name, args = node.name, node.args
        if name in _GEO_FUNCTIONS:
            return self.geo_call(name, args, entity)
        if name in _STRING_FUNCTIONS:
            if name == "substringof":  # substringof(needle, haystack), OData 2 / STA 1.x
                needle, haystack = args
            elif name == "contains":
                haystack, needle = args
            else:
                haystack, needle = args
            h = self.text(haystack, entity, name)
            n = self.text(needle, entity, name)
            if name == "startswith":
                return Typed(S("starts_with({}, {})").format(h, n), "boolean")
            if name == "endswith":
                return Typed(S("(right({h}, length({n})) = {n})").format(h=h, n=n), "boolean")
            return Typed(S("(strpos({}, {}) > 0)").format(h, n), "boolean")
        if name == "length":
            return Typed(S("length({})").format(self.text(args[0], entity, name)), "number")
        if name == "indexof":
            s, sub = (self.text(a, entity, name) for a in args)
            return Typed(S("(strpos({}, {}) - 1)").format(s, sub), "number")
        if name == "substring":
            s = self.text(args[0], entity, name)
            start = self.number(args[1], entity, name)
            if len(args) == 3:
                length = self.number(args[2], entity, name)
                expr = S("substr({}, ({})::int + 1, greatest(({})::int, 0))").format(
                    s, start, length
                )
            else:
                expr = S("substr({}, ({})::int + 1)").format(s, start)
            return Typed(expr, "string")
        if name in ("tolower", "toupper", "trim"):
            function = {"tolower": "lower", "toupper": "upper", "trim": "btrim"}[name]
            return Typed(
                S("{}({})").format(S(function), self.text(args[0], entity, name)), "string"
            )
        if name == "concat":
            a, b = (self.text(x, entity, name) for x in args)
            return Typed(S("({} || {})").format(a, b), "string")
        if name in _DATE_PARTS:
            moment = self.datetime_(args[0], entity, name)
            return Typed(
                S("extract({} FROM ({}) AT TIME ZONE 'UTC')::int").format(
                    S(_DATE_PARTS[name]), moment
                ),
                "number",
            )
        if name == "second":
            moment = self.datetime_(args[0], entity, name)
            return Typed(
                S("floor(extract(second FROM ({}) AT TIME ZONE 'UTC'))::int").format(moment),
                "number",
            )
        if name in ("round", "floor", "ceiling"):
            function = {"round": "round", "floor": "floor", "ceiling": "ceil"}[name]
            return Typed(
                S("{}({})").format(S(function), self.number(args[0], entity, name)), "number"
            )
        if name == "now":
            return Typed(S("now()"), "datetime")
        raise self.error(f"unsupported function {name}")  # pragma: no cover

    def _integer(self, node: Node) -> Typed | None:
        """A quoted integer literal as a number."""
        if not (isinstance(node, ODataLiteral) and node.kind == "string"):
            return None
        try:
            number = int(str(node.value))
        except ValueError:
            return None
        return self.literal(ODataLiteral(number, "number"))

    def _coerced(self, node: Node, to: ValueType) -> Typed | None:
        """A quoted date-time literal taken as a date-time."""
        if not isinstance(node, ODataLiteral):
            return None
        if node.kind == "string" and to == "datetime":
            try:
                moment = datetime.fromisoformat(str(node.value).replace("z", "Z"))
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return self.literal(ODataLiteral(moment, "datetime"))
        return None

    def compare(self, op: str, left: Node, right: Node, entity: Entity) -> sql.Composable:
        a = self.value(left, entity)
        b = self.value(right, entity)
        operator = S(_SQL_OPERATORS[op])
        if a.type == "null" or b.type == "null":
            if op not in ("eq", "ne"):
                raise self.error(f"null can only be compared with eq or ne, not {op}")
            if a.type == b.type:
                return S("TRUE") if op == "eq" else S("FALSE")
            other = b if a.type == "null" else a
            test = S("IS NULL") if op == "eq" else S("IS NOT NULL")
            return S("({} {})").format(other.expr, test)
        if a.type == "json" or b.type == "json":
            return self._compare_json(op, a, b, left, right)
        if {a.type, b.type} == {"number", "string"}:
            # id eq '5' is the id 5 (and can use its index); otherwise a number and a
            # quoted value (name eq 5, result gt '3') compare as text, as FROST-Server
            # does and the OGC test suite (ets-sta10) expects
            number = (
                self._integer(left if a.type == "string" else right) if op in ("eq", "ne") else None
            )
            if number is None:
                return self._compare_text(op, a, b)
            if a.type == "string":
                a = number
            else:
                b = number
        if a.type == b.type == "string" and op not in ("eq", "ne"):
            return self._compare_text(op, a, b)
        if a.type != b.type:
            a = self._coerced(left, b.type) or a
            b = self._coerced(right, a.type) or b
        if a.type != b.type:
            raise self.error(
                f"cannot compare {_describe(left)} ({a.type}) with {_describe(right)} ({b.type})"
            )
        if a.interval is not None and b.interval is None:
            return _interval_compare(op, a.interval, b.expr)
        if b.interval is not None and a.interval is None:
            return _interval_compare(_MIRRORED[op], b.interval, a.expr)
        return S("({} {} {})").format(a.expr, operator, b.expr)

    @staticmethod
    def _compare_text(op: str, a: Typed, b: Typed) -> sql.Composable:
        """Text against text in code point order (``COLLATE "C"``), whatever the
        database's locale: OData leaves collation open, clients compare as Java and
        Python do."""

        def text(value: Typed) -> sql.Composable:
            return value.expr if value.type == "string" else S("({})::text").format(value.expr)

        return S('({} COLLATE "C" {} {})').format(text(a), S(_SQL_OPERATORS[op]), text(b))

    def _compare_json(self, op: str, a: Typed, b: Typed, left: Node, right: Node) -> sql.Composable:
        """A JSON member against a value: jsonb against jsonb, so numbers compare as
        numbers and text as text, and a member of another type is simply unequal."""

        def as_jsonb(value: Typed, node: Node) -> sql.Composable:
            if value.type == "json":
                return value.expr
            if value.type in ("string", "number", "boolean"):
                return S("to_jsonb({})").format(value.expr)
            raise self.error(f"cannot compare a JSON member with {_describe(node)} ({value.type})")

        return S("({} {} {})").format(as_jsonb(a, left), S(_SQL_OPERATORS[op]), as_jsonb(b, right))


def compile_filter(
    node: Node, entity: Entity, params: Params, where: Where, option: str = "$filter"
) -> None:
    """Add the filter's conditions to ``where``.  On Observations, ``and`` terms that
    only name Datastream properties go to the series level."""
    compiler = FilterCompiler(params, option)
    if entity is not OBSERVATION:
        where.rows.append(compiler.condition(node, entity))
        return
    datastream = ENTITIES["Datastreams"]
    for term in _conjuncts(node):
        paths = paths_in(term)
        if _only_through(paths, "Datastream"):
            where.series.append(compiler.condition(_strip_first(term, "Datastream"), datastream))
        elif _only_through(paths, "FeatureOfInterest"):
            # an Observation's feature is its series' site: decided per series too
            where.series.append(
                S("EXISTS (SELECT 1 FROM {} WHERE {} = ds_d.site_id AND {})").format(
                    FEATURE.source,
                    FEATURE.keys["id"],
                    compiler.condition(_strip_first(term, "FeatureOfInterest"), FEATURE),
                )
            )
        else:
            where.rows.append(compiler.condition(term, entity))


def _only_through(paths: list[Path], navigation: str) -> bool:
    return bool(paths) and all(p.segments[0] == navigation and len(p.segments) > 1 for p in paths)


def exclude_failed(where: Where) -> None:
    """Leave out Observations flagged FAIL (aggregates have no flag and stay)."""
    where.rows.append(S("ob.quality IS DISTINCT FROM {}").format(sql.Literal(FAIL)))


# ---------------------------------------------------------------------- keyset paging


@dataclass(frozen=True, slots=True)
class Keyset:
    """A position in Observations ordered by (phenomenonTime, Datastream id), time
    ascending or descending: the last row of a page, for the next to start after."""

    descending: bool
    micros: int  # phenomenonTime, microseconds since the epoch
    series_id: int

    def token(self) -> str:
        return f"{'d' if self.descending else 'a'}{self.micros}.{self.series_id}"

    @classmethod
    def parse(cls, text: str, option: str = "$skiptoken") -> Keyset:
        found = re.fullmatch(r"([ad])(-?[0-9]{1,19})\.([0-9]{1,10})", text.strip())
        if found is None or int(found.group(3)) > 2**31 - 1:
            raise ODataError(option, "is not a position this service handed out in a nextLink")
        return cls(found.group(1) == "d", int(found.group(2)), int(found.group(3)))

    def condition(self, params: Params, where: Where) -> None:
        """Rows after this one, inside each series (``time >= t`` bounds the index scan)."""
        try:
            moment = _EPOCH + timedelta(microseconds=self.micros)
        except OverflowError:
            raise ODataError("$skiptoken", "holds a time out of range") from None
        t = params.add(moment)
        s = params.add(self.series_id)
        if self.descending:
            cond = (
                "(ob.phenomenon_time <= {t} AND (ob.phenomenon_time < {t} OR ob.series_id > {s}))"
            )
        else:
            cond = (
                "(ob.phenomenon_time >= {t} AND (ob.phenomenon_time > {t} OR ob.series_id > {s}))"
            )
        where.rows.append(S(cond).format(t=t, s=s))


def keyset_direction(entity: Entity, options: QueryOptions) -> bool | None:
    """Whether a page of ``entity`` can be continued by a keyset: None when not; else
    whether phenomenonTime descends."""
    if entity is not OBSERVATION:
        return None
    if not options.orderby:
        return False
    if len(options.orderby) == 1 and options.orderby[0].path.segments == ("phenomenonTime",):
        return options.orderby[0].descending
    return None


def _conjuncts(node: Node) -> list[Node]:
    if isinstance(node, Binary) and node.op == "and":
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


# ---------------------------------------------------------------------- $orderby, $select


def compile_orderby(
    entity: Entity, orderby: tuple[OrderBy, ...], params: Params, option: str = "$orderby"
) -> list[tuple[sql.Composable, bool]]:
    """ORDER BY terms, ending with the entity's default order so pages are stable."""
    compiler = FilterCompiler(params, option)
    terms: list[tuple[sql.Composable, bool]] = []
    for item in orderby:
        if item.path.segments[0] in entity.navs:
            raise ODataError(
                option, f"ordering by a navigation property ({item.path}) is not supported"
            )
        typed = compiler.path(item.path, entity)
        expr = S('({}) COLLATE "C"').format(typed.expr) if typed.type == "string" else typed.expr
        terms.append((expr, item.descending))
    terms.extend(entity.default_order)
    if entity is OBSERVATION:
        terms.append((S("ob.series_id"), False))
    else:
        terms.append((entity.id_expr, False))
    return terms


@dataclass(frozen=True, slots=True)
class Selection:
    props: tuple[Prop, ...]
    navs: tuple[Nav, ...]
    with_id: bool
    with_self_link: bool


def resolve_select(
    entity: Entity, select: tuple[str, ...] | None, option: str = "$select"
) -> Selection:
    if select is None:
        return Selection(tuple(entity.props.values()), tuple(entity.navs.values()), True, True)
    props: list[Prop] = []
    navs: list[Nav] = []
    with_id = with_self = False
    for name in select:
        if name in ("id", "@iot.id"):
            with_id = True
        elif name == "@iot.selfLink":
            with_self = True
        elif name in entity.props:
            props.append(entity.props[name])
        elif name in entity.navs:
            navs.append(entity.navs[name])
        elif name == "*":
            return resolve_select(entity, None)
        else:
            known = ", ".join(["id", "@iot.selfLink", *entity.props, *entity.navs])
            raise ODataError(
                option, f"{entity.set_name} have no property {name!r} (known: {known})"
            )
    return Selection(tuple(props), tuple(navs), with_id, with_self)


# ---------------------------------------------------------------------- queries


def _order_sql(order: list[tuple[sql.Composable, bool]]) -> sql.Composable:
    # PostgreSQL's default null placement (last ascending, first descending) is the
    # order of a btree scanned either way, so ORDER BY time DESC reads the readings
    # key backwards instead of sorting the series.
    return S(", ").join(
        S("{} {}").format(expr, S("DESC") if desc else S("ASC")) for expr, desc in order
    )


def _where_sql(conditions: list[sql.Composable]) -> sql.Composable:
    if not conditions:
        return S("")
    return S(" WHERE ") + S(" AND ").join(conditions)


def observation_rows(
    where: Where,
    order: list[tuple[sql.Composable, bool]] | None = None,
    per_series_limit: int | None = None,
) -> sql.Composable:
    """The Observations matching ``where`` as a sub-query with the columns of
    `OBSERVATION_COLUMNS`: per series, readings or (aggregate-only series) hourly
    rollups, each under LATERAL with the row conditions and, for a page, the order
    and a limit inside."""
    tail: sql.Composable = S("")
    if order is not None:
        tail = S(" ORDER BY {}").format(_order_sql(order))
    if per_series_limit is not None:
        tail = tail + S(" LIMIT {}").format(sql.Literal(per_series_limit))

    def branch(rows: sql.Composable, aggregate: bool) -> sql.Composable:
        gate = S("ds_m.domain = ANY({})" if aggregate else "ds_m.domain <> ALL({})").format(PRIVATE)
        return S(
            "SELECT {columns} FROM {series} CROSS JOIN LATERAL"
            " (SELECT * FROM ({rows}) ob{conditions}{tail}) ob{where}"
        ).format(
            columns=S(", ").join(sql.Identifier("ob", c) for c in OBSERVATION_COLUMNS),
            series=SERIES_FROM,
            rows=rows,
            conditions=_where_sql(where.rows),
            tail=tail,
            where=_where_sql([gate, *where.series]),
        )

    return S("({} UNION ALL {})").format(branch(READINGS_ROWS, False), branch(ROLLUP_ROWS, True))


def _from(
    entity: Entity,
    where: Where,
    order: list[tuple[sql.Composable, bool]] | None,
    per_series_limit: int | None,
) -> tuple[sql.Composable, list[sql.Composable]]:
    """FROM clause and the WHERE conditions still to apply to it."""
    if entity is OBSERVATION:
        return S("{} ob").format(observation_rows(where, order, per_series_limit)), []
    return entity.source, where.all()


def rows_query(
    entity: Entity,
    columns: list[sql.Composable],
    where: Where,
    params: Params,
    *,
    order: list[tuple[sql.Composable, bool]] | None = None,
    limit: int | None = None,
    offset: int = 0,
    partition: sql.Composable | None = None,
) -> Query:
    """``SELECT columns`` of the entity's rows matching ``where``; with ``partition``,
    ``offset``/``limit`` apply within each partition (expanded collections of many
    parents in one query) and a last column numbers the rows of each."""
    per_series = None
    inner_order = order
    if entity is OBSERVATION and order is not None and limit is not None:
        per_series = offset + limit
        # the last term, series_id, is one value within a series
        inner_order = order[:-1]
    source, conditions = _from(entity, where, inner_order, per_series)
    listed = S(", ").join(
        S("{} AS {}").format(c, sql.Identifier(f"c{i}")) for i, c in enumerate(columns)
    )
    if partition is None:
        query: sql.Composed = S("SELECT {} FROM {}{}").format(
            listed, source, _where_sql(conditions)
        )
        if order is not None:
            query = query + S(" ORDER BY {}").format(_order_sql(order))
        if limit is not None:
            query = query + S(" LIMIT {}").format(params.add(limit))
        if offset:
            query = query + S(" OFFSET {}").format(params.add(offset))
        return query, params.values
    assert order is not None
    assert limit is not None
    numbered = S(
        "SELECT {}, row_number() OVER (PARTITION BY {} ORDER BY {}) AS sta_rn FROM {}{}"
    ).format(listed, partition, _order_sql(order), source, _where_sql(conditions))
    query = S(
        "SELECT * FROM ({}) numbered WHERE sta_rn > {} AND sta_rn <= {} ORDER BY sta_rn"
    ).format(numbered, params.add(offset), params.add(offset + limit))
    return query, params.values


def count_query(
    entity: Entity, where: Where, params: Params, partition: sql.Composable | None = None
) -> Query:
    """How many rows match (``@iot.count``), per partition when given."""
    source, conditions = _from(entity, where, None, None)
    if partition is None:
        return S("SELECT count(*) FROM {}{}").format(source, _where_sql(conditions)), params.values
    return (
        S("SELECT {p}, count(*) FROM {}{} GROUP BY {p}").format(
            source, _where_sql(conditions), p=partition
        ),
        params.values,
    )


def parent_keys(entity: Entity, key: str, where: Where, params: Params) -> sql.Composable:
    """A sub-query of the given key of the entity's rows matching ``where``."""
    query, _ = rows_query(entity, [entity.keys[key]], where, params)
    return query


@dataclass(frozen=True, slots=True)
class Layout:
    """What the columns of an entity query hold, in order."""

    selection: Selection
    expand_keys: tuple[str, ...]  # parent keys of the expanded navigations
    partitioned: bool


def entity_query(
    entity: Entity,
    options: QueryOptions,
    where: Where,
    params: Params,
    *,
    single: bool = False,
    partition_key: str | None = None,
    option_prefix: str = "",
    after: Keyset | None = None,
) -> tuple[Query, Layout]:
    """A page of entities (or the one entity) with the columns `Layout` describes:
    id, the selected properties, then the keys the expanded navigations need (and
    the partition key and row number for expanded collections).  ``after`` starts the
    page after a keyset position; ``where`` itself (what a count reads) keeps only
    the filter."""
    if options.filter is not None and not single:
        compile_filter(options.filter, entity, params, where, option_prefix + "$filter")
    if after is not None:
        where = Where(list(where.rows), list(where.series))
        after.condition(params, where)
    selection = resolve_select(entity, options.select, option_prefix + "$select")
    expand_keys: list[str] = []
    for item in options.expand:
        nav = entity.navs.get(item.navigation)
        if nav is None:
            known = ", ".join(entity.navs)
            raise ODataError(
                option_prefix + "$expand",
                f"{entity.set_name} have no navigation property {item.navigation!r} "
                f"(known: {known})",
            )
        expand_keys.append(nav.parent_key)
    columns: list[sql.Composable] = [entity.id_expr]
    columns += [p.selected for p in selection.props]
    columns += [entity.keys[k] for k in expand_keys]
    partition = None
    if partition_key is not None:
        partition = entity.keys[partition_key]
        columns.append(partition)
    order = compile_orderby(entity, options.orderby, params, option_prefix + "$orderby")
    if single:
        query = rows_query(entity, columns, where, params, order=order, limit=2)
    else:
        # one row more than the page says whether there is a next page
        query = rows_query(
            entity,
            columns,
            where,
            params,
            order=order,
            limit=options.page_size + 1,
            offset=options.skip,
            partition=partition,
        )
    return query, Layout(selection, tuple(expand_keys), partition is not None)


def exists_query(entity: Entity, where: Where, params: Params) -> Query:
    inner, _ = rows_query(entity, [S("1")], where, params)
    return S("SELECT EXISTS ({})").format(inner), params.values
