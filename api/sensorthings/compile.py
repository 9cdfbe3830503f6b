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

from api.sensorthings.model import (
    BASE_PARAMS,
    ENTITIES,
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
    """Named parameters of one query: ``add`` returns the placeholder of a value."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = dict(BASE_PARAMS)
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


_SQL_OPERATORS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_STRING_FUNCTIONS = frozenset({"substringof", "contains", "startswith", "endswith"})
_DATE_PARTS = {"year": "year", "month": "month", "day": "day", "hour": "hour", "minute": "minute"}


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
                return Typed(prop.expr, "json", S("({})::text").format(prop.expr))
            return Typed(prop.expr, prop.type)
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

    def call(self, node: Call, entity: Entity) -> Typed:
        name, args = node.name, node.args
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

    def _coerced(self, node: Node, to: ValueType) -> Typed | None:
        """A literal taken as the other side's type where OData clients write it
        loosely: '5' for a numeric id, 5 for a string id, a quoted date-time."""
        if not isinstance(node, ODataLiteral):
            return None
        if node.kind == "string" and to == "number":
            try:
                number = int(str(node.value))
            except ValueError:
                return None
            return self.literal(ODataLiteral(number, "number"))
        if node.kind == "number" and to == "string":
            return self.literal(ODataLiteral(str(node.value), "string"))
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
        if a.type != b.type:
            a = self._coerced(left, b.type) or a
            b = self._coerced(right, a.type) or b
        if a.type != b.type:
            raise self.error(
                f"cannot compare {_describe(left)} ({a.type}) with {_describe(right)} ({b.type})"
            )
        return S("({} {} {})").format(a.expr, operator, b.expr)

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
        if paths and all(p.segments[0] == "Datastream" and len(p.segments) > 1 for p in paths):
            where.series.append(compiler.condition(_strip_first(term, "Datastream"), datastream))
        else:
            where.rows.append(compiler.condition(term, entity))


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
        terms.append((compiler.path(item.path, entity).expr, item.descending))
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
) -> tuple[Query, Layout]:
    """A page of entities (or the one entity) with the columns `Layout` describes:
    id, the selected properties, then the keys the expanded navigations need (and
    the partition key and row number for expanded collections)."""
    if options.filter is not None and not single:
        compile_filter(options.filter, entity, params, where, option_prefix + "$filter")
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
