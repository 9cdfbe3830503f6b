"""The ``$filter`` of SensorThings (OGC 18-088 §9.3.3.5) compiled to a SQL condition:
the parameters of a query (`Params`), the conditions on an entity's rows (`Where`),
and `FilterCompiler`, which type-checks an OData tree against an entity before any
SQL exists, so a query that reaches the database is well-typed: mistakes are
`ODataError`s (400), never database errors.

Navigation (``Thing/name eq 'x'``, ``Datastream/ObservedProperty/name eq 'PM2.5'``)
becomes ``EXISTS`` over the related entity, one level per hop, which for a to-many
navigation is OData's implicit "any".  On Observations, top-level ``and`` terms that
only look at the Datastream, or only at the FeatureOfInterest, are applied to the
series before any reading is read.

Geospatial functions are `api.sensorthings.geo`'s; a comparison of a time interval
(Datastream phenomenonTime and resultTime) with an instant follows 18-088 §9.3.3.5.1
(`_interval_compare`); a number against a quoted value compares as text, as
FROST-Server does and OGC's test suite expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    Entity,
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
    Path,
    paths_in,
)
from api.sensorthings.odata import Literal as ODataLiteral

S = sql.SQL


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


def _conjuncts(node: Node) -> list[Node]:
    if isinstance(node, Binary) and node.op == "and":
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]
