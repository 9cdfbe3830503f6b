"""SensorThings query options compiled to SQL: plain functions returning ``(query,
params)``, unit-tested without a database (tests/api/test_sensorthings_compile.py).

Values from the request are always parameters (`Params`); identifiers and the
fixed SQL of `api.sensorthings.model` are the only SQL text.  ``$filter`` is
`api.sensorthings.filters`'.

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from api.sensorthings.filters import (
    FilterCompiler,
    Params,
    Where,
    compile_filter,
    exclude_failed,
    id_condition,
    key_condition,
)
from api.sensorthings.model import (
    OBSERVATION,
    OBSERVATION_COLUMNS,
    PRIVATE,
    READINGS_ROWS,
    ROLLUP_ROWS,
    SERIES_FROM,
    Entity,
    Nav,
    Prop,
)
from api.sensorthings.odata import ODataError, OrderBy, QueryOptions

__all__ = [
    "Keyset",
    "Layout",
    "Params",
    "Where",
    "compile_filter",
    "count_query",
    "entity_query",
    "exclude_failed",
    "exists_query",
    "format_id",
    "id_condition",
    "key_condition",
    "keyset_direction",
    "observation_id",
    "parent_keys",
    "parse_id",
    "rows_query",
]

Query = tuple[sql.SQL | sql.Composed, dict[str, Any]]
S = sql.SQL

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
