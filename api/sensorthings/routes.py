"""The SensorThings API v1.1 read-only service (OGC 18-088): resource paths
(§9.2), query options (§9.3) and the JSON encoding of entities (§8).

Everything under the service root is one route that parses the resource path
itself, since STA paths chain navigation freely (``/Datastreams(5)/Thing/Locations``)
and put keys in parentheses (``/Things('narvik-sentrum')``).  What is supported:

* ``/`` — the entity sets and the conformance classes;
* ``/Set``, ``/Set(id)``, ``/Set(id)/Nav[/Nav…]``, and ``…/property`` and
  ``…/property/$value`` of one entity; ``…/$ref`` after an entity or a collection
  (association links, §9.2.7: only the ``@iot.selfLink`` of each);
* ``$top`` (default 100; more than 10 000 gets pages of 10 000), ``$skip``,
  ``$count``, ``$orderby``, ``$select``, ``$expand`` (nested, with options, up to
  three levels), ``$filter`` (with the geospatial functions), and
  ``$resultFormat=dataArray`` on Observations (§14.3);
* ``include_failed=true``: Observations flagged FAIL by QC are left out unless asked
  for, as /v1 leaves them out of its aggregates.

Observations come oldest first unless ``$orderby`` says otherwise, and their
``@iot.nextLink`` continues by keyset (``$skiptoken``: the last row's phenomenonTime
and Datastream), so a harvest while data arrives neither repeats nor skips a reading
that arrives in time order, and a deep page is as fast as the first; with another
``$orderby`` (e.g. by result) and for the other entity sets the nextLink advances
``$skip``.  A ``$skip`` sent by the client is honoured as such.  Over
``/Observations`` without a Datastream every
series is read, each through its (series_id, time) key: cheap for the newest page,
and for time ranges when ``$filter`` bounds ``phenomenonTime``; ordering by
``result`` or counting without a time bound reads every reading, so a statement
timeout (`STATEMENT_TIMEOUT`) turns a query too costly into a 400 asking for a
narrower one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode

import psycopg
from fastapi import APIRouter, Path, Request
from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow
from pydantic import BaseModel, Field
from starlette.responses import PlainTextResponse, Response

from api.db import pool_of
from api.json_sql import DATA_PLACEHOLDER
from api.problems import Problem
from api.responses import (
    MAX_AGE_DATA,
    cacheable_response,
    dumps,
    read_response,
    spliced_response,
)
from api.sensorthings import page_json
from api.sensorthings.compile import (
    Keyset,
    Layout,
    Params,
    Where,
    count_query,
    entity_query,
    exclude_failed,
    exists_query,
    format_id,
    id_condition,
    key_condition,
    keyset_direction,
    parent_keys,
    parse_id,
)
from api.sensorthings.model import ENTITIES, OBSERVATION, Entity, Nav
from api.sensorthings.odata import (
    DEFAULT_TOP,
    MAX_SKIP,
    MAX_TOP,
    ExpandItem,
    ODataError,
    QueryOptions,
    parse_options,
)
from api.sensorthings.sensorml import EXAMPLE as SENSORML_EXAMPLE
from api.sensorthings.sensorml import sensorml_response

router = APIRouter()

#: longest a SensorThings query may run before it is refused as too costly
STATEMENT_TIMEOUT = "15s"

CONFORMANCE = (
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array",
)
#: the MQTT extension's conformance class (§14.2), declared when a broker URL is set
MQTT_RECEIVE = (
    "http://www.opengis.net/spec/iot_sensing/1.1/req/receive-updates-via-mqtt/receive-updates"
)
#: the non-OData query parameter that brings FAIL-flagged Observations back
INCLUDE_FAILED = "include_failed"

Query = tuple[sql.SQL | sql.Composed, dict[str, Any]]


# ---------------------------------------------------------------------- resource paths

_SEGMENT = re.compile(r"^(?P<name>[A-Za-z$][A-Za-z0-9_]*)(?:\((?P<key>.*)\))?$", re.DOTALL)


def _segments(path: str) -> list[str]:
    """Path segments, splitting on ``/`` outside quoted keys."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in path:
        if char == "'":
            quoted = not quoted
        if char == "/" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p]


def _not_found(path: str, why: str) -> Problem:
    return Problem(404, "Not found", f"no SensorThings resource at /{path}: {why}")


@dataclass(slots=True)
class Resolved:
    """A resource path resolved to rows of one entity."""

    entity: Entity
    where: Where
    params: Params
    single: bool
    parent: Resolved | None  # the path before the last navigation (for 404s)
    property: str | None = None  # …/name
    raw_value: bool = False  # …/name/$value
    ref: bool = False  # …/$ref: association links only


def resolve(path: str, base: str = "") -> Resolved:
    segments = _segments(path)
    ref = bool(segments) and segments[-1] == "$ref" and len(segments) > 1
    if ref:
        segments = segments[:-1]
    first = _SEGMENT.match(segments[0])
    if first is None or first.group("name") not in ENTITIES:
        known = ", ".join(ENTITIES)
        raise _not_found(path, f"{segments[0]!r} is not an entity set (there are: {known})")
    entity = ENTITIES[first.group("name")]
    params = Params(base)
    resolved = Resolved(entity, Where(), params, False, None)
    if first.group("key") is not None:
        resolved = _with_key(resolved, first.group("key"), path)
    for index, segment in enumerate(segments[1:], start=1):
        found = _SEGMENT.match(segment)
        if found is None:
            raise _not_found(path, f"{segment!r} is not a navigation or property name")
        name, key = found.group("name"), found.group("key")
        current = resolved.entity
        if resolved.property is not None:
            if segment == "$value" and index == len(segments) - 1:
                resolved.raw_value = True
                continue
            raise _not_found(path, f"nothing under the property {resolved.property}")
        if not resolved.single:
            raise _not_found(path, f"{segment!r} needs one entity before it, not a collection")
        if name in current.props and key is None:
            resolved.property = name
            continue
        nav = current.navs.get(name)
        if nav is None:
            known = ", ".join([*current.navs, *current.props])
            raise _not_found(path, f"{current.name} has no {name!r} (it has: {known})")
        resolved = _navigate(resolved, nav, params)
        if key is not None:
            resolved = _with_key(resolved, key, path)
    if ref:
        if resolved.property is not None:
            raise _not_found(path, "$ref follows an entity or a collection, not a property")
        resolved.ref = True
    return resolved


def _with_key(resolved: Resolved, key_text: str, path: str) -> Resolved:
    if resolved.single:
        raise _not_found(path, "a key after a single entity")
    key = parse_id(resolved.entity, key_text)
    if key is None:
        raise _not_found(path, f"{key_text!r} is not an id of {resolved.entity.set_name}")
    id_condition(resolved.entity, key, resolved.params, resolved.where)
    resolved.single = True
    return resolved


def _navigate(parent: Resolved, nav: Nav, params: Params) -> Resolved:
    target = ENTITIES[nav.target]
    where = Where()
    subquery = parent_keys(parent.entity, nav.parent_key, parent.where, params)
    key_condition(target, nav.target_key, sql.SQL("IN ({})").format(subquery), where)
    return Resolved(target, where, params, not nav.to_many, parent)


# ---------------------------------------------------------------------- running queries


async def _rows(conn: AsyncConnection[TupleRow], query: Query) -> list[TupleRow]:
    """The rows of ``query``, prepared once its text has run five times on this
    connection (psycopg's threshold, as for /v1): a harvest asks for the same page
    shape again and again, and planning a 1,000-Observation page cost PostgreSQL
    about as much as running it (bench/api.py (d): 8.0 -> 5.4 ms a page).  The
    connection keeps at most psycopg's 100 prepared statements, the least used
    deallocated first, so the many one-off shapes $filter and $expand make cannot
    pile up."""
    cur = await conn.execute(query[0], query[1], binary=True)
    rows: list[TupleRow] = await cur.fetchall()
    return rows


async def _exists(conn: AsyncConnection[TupleRow], resolved: Resolved) -> bool:
    rows = await _rows(conn, exists_query(resolved.entity, resolved.where, resolved.params))
    return bool(rows[0][0])


@dataclass(frozen=True, slots=True)
class Context:
    base: str  # absolute URL of the service root, no trailing slash
    include_failed: bool = False  # FAIL-flagged Observations too (`INCLUDE_FAILED`)


def _self_link(ctx: Context, entity: Entity, entity_id: Any) -> str:
    return f"{ctx.base}/{entity.set_name}({format_id(entity, entity_id)})"


@dataclass(slots=True)
class Rendered:
    """One entity's JSON, its self link, and the values of its expand keys."""

    document: dict[str, Any]
    self_link: str
    keys: list[Any]


def _render(ctx: Context, entity: Entity, layout: Layout, row: TupleRow) -> Rendered:
    entity_id = row[0]
    document: dict[str, Any] = {}
    selection = layout.selection
    self_link = _self_link(ctx, entity, entity_id)
    if selection.with_id:
        document["@iot.id"] = entity_id
    if selection.with_self_link:
        document["@iot.selfLink"] = self_link
    position = 1
    for prop in selection.props:
        value = row[position]
        document[prop.name] = prop.render(value) if prop.render is not None else value
        position += 1
    for nav in selection.navs:
        document[f"{nav.name}@iot.navigationLink"] = f"{self_link}/{nav.name}"
    keys = list(row[position : position + len(layout.expand_keys)])
    return Rendered(document, self_link, keys)


def _page_query(
    ctx: Context,
    entity: Entity,
    options: QueryOptions,
    where: Where,
    params: Params,
    *,
    single: bool,
) -> tuple[Query, Layout, bool | None]:
    """The query of one page (or the one entity), what its columns hold, and the
    direction of a keyset continuation (None where there is none)."""
    if entity is OBSERVATION and not single and not ctx.include_failed:
        exclude_failed(where)
    direction = None if single else keyset_direction(entity, options)
    after = None
    if options.skiptoken is not None:
        if direction is None:
            raise ODataError(
                "$skiptoken",
                "continues only Observations ordered by phenomenonTime, as the server's "
                "own nextLinks do",
            )
        after = Keyset.parse(options.skiptoken)
        if after.descending != direction:
            raise ODataError("$skiptoken", "belongs to the other sort direction")
    query, layout = entity_query(entity, options, where, params, single=single, after=after)
    return query, layout, direction


def _keyset_after(direction: bool | None, last_id: Any) -> Keyset | None:
    """Where a keyset continuation starts: after the Observation ``last_id``."""
    if direction is None or last_id is None:
        return None
    series, micros = str(last_id).split("-")
    return Keyset(direction, int(micros), int(series))


async def _page(
    conn: AsyncConnection[TupleRow],
    ctx: Context,
    entity: Entity,
    options: QueryOptions,
    where: Where,
    params: Params,
    *,
    single: bool,
) -> tuple[list[dict[str, Any]], bool, Keyset | None]:
    """Entities of one page (or the one entity) with their expansions, whether more
    rows follow, and where a keyset continuation would start (the last row)."""
    query, layout, direction = _page_query(ctx, entity, options, where, params, single=single)
    rows = await _rows(conn, query)
    more = not single and len(rows) > options.page_size
    rows = rows[:1] if single else rows[: options.page_size]
    rendered = [_render(ctx, entity, layout, row) for row in rows]
    await _expand(conn, ctx, entity, options.expand, rendered, "")
    last = _keyset_after(direction, rows[-1][0]) if rows else None
    return [r.document for r in rendered], more, last


async def _observations_json(
    conn: AsyncConnection[TupleRow],
    ctx: Context,
    options: QueryOptions,
    resolved: Resolved,
    components: list[str] | None,
) -> tuple[int, bytes, Keyset | None]:
    """A page of Observations as JSON written by PostgreSQL (`page_json`): rows
    found (one more than the page when more follow), the page, the keyset after it.
    With ``components``, the page is in the Data Array encoding, of those."""
    query, layout, direction = _page_query(
        ctx, OBSERVATION, options, resolved.where, resolved.params, single=False
    )
    if components is not None:
        json_query = page_json.data_array_query(
            query, layout, ctx.base, options.page_size, components
        )
    else:
        json_query = page_json.page_query(query, layout, ctx.base, options.page_size)
    found, data, last_id = (await _rows(conn, json_query))[0]
    return int(found), bytes(data), _keyset_after(direction, last_id)


async def _expand(
    conn: AsyncConnection[TupleRow],
    ctx: Context,
    entity: Entity,
    items: tuple[ExpandItem, ...],
    parents: list[Rendered],
    prefix: str,
) -> None:
    """Fill in each expanded navigation of the parents: one query per navigation for
    all the parents together (and one more for its counts), never one per parent."""
    for index, item in enumerate(items):
        nav = entity.navs[item.navigation]
        target = ENTITIES[nav.target]
        options = item.options
        inner_prefix = f"{prefix}$expand {item.navigation}: "
        keys = sorted({p.keys[index] for p in parents if p.keys[index] is not None})
        children: dict[Any, list[Rendered]] = {}
        counts: dict[Any, int] = {}
        more: set[Any] = set()
        if keys:
            params = Params(ctx.base)
            where = Where()
            key_condition(
                target, nav.target_key, sql.SQL("= ANY({})").format(params.add(keys)), where
            )
            if target is OBSERVATION and not ctx.include_failed:
                exclude_failed(where)
            if nav.to_many:
                query, layout = entity_query(
                    target,
                    options,
                    where,
                    params,
                    partition_key=nav.target_key,
                    option_prefix=inner_prefix,
                )
            else:
                # to-one navigations point at the target's id: one row per key at most
                one_each = replace(options, top=len(keys), skip=0)
                query, layout = entity_query(
                    target, one_each, where, params, option_prefix=inner_prefix
                )
            for row in await _rows(conn, query):
                if layout.partitioned:
                    parent_key, number = row[-2], row[-1]
                    if number > options.skip + options.page_size:
                        more.add(parent_key)
                        continue
                    child = _render(ctx, target, layout, row[:-2])
                else:
                    parent_key = row[0]
                    child = _render(ctx, target, layout, row)
                children.setdefault(parent_key, []).append(child)
            if nav.to_many and options.count:
                # entity_query compiled the $filter into `where`: the counts see it too
                partition = target.keys[nav.target_key]
                counted = await _rows(conn, count_query(target, where, params, partition))
                counts = {key: int(n) for key, n in counted}
            everything = [child for group in children.values() for child in group]
            await _expand(conn, ctx, target, options.expand, everything, inner_prefix)
        for parent in parents:
            key = parent.keys[index]
            found = children.get(key, []) if key is not None else []
            if not nav.to_many:
                parent.document[nav.name] = found[0].document if found else None
                continue
            parent.document[nav.name] = [child.document for child in found]
            if options.count:
                parent.document[f"{nav.name}@iot.count"] = counts.get(key, 0)
            if key in more:
                parent.document[f"{nav.name}@iot.nextLink"] = _expand_next_link(
                    parent.self_link, nav, options
                )


def _expand_next_link(self_link: str, nav: Nav, options: QueryOptions) -> str:
    """The rest of an expanded collection: the navigation path with the item's own
    options and ``$skip`` advanced."""
    raw = {k: v for k, v in options.raw.items() if k not in ("$skip", "$top")}
    raw["$top"] = str(options.page_size)
    raw["$skip"] = str(options.skip + options.page_size)
    return f"{self_link}/{nav.name}?{urlencode(raw, quote_via=quote, safe=_SAFE)}"


_SAFE = "$'(),;/:@!*"


def _next_link(
    request: Request, ctx: Context, options: QueryOptions, after: Keyset | None = None
) -> str:
    """The request's own URL for the next page: with ``$skiptoken`` after the last row
    where the order allows a keyset, else with ``$skip`` advanced."""
    pairs = [
        (k, v)
        for k, v in parse_qsl(request.url.query, keep_blank_values=True)
        if k not in ("$skip", "$top", "$skiptoken")
    ]
    pairs.append(("$top", str(options.page_size)))
    if after is not None:
        pairs.append(("$skiptoken", after.token()))
    else:
        pairs.append(("$skip", str(options.skip + options.page_size)))
    path = request.url.path
    root = request.url_for("sensorthings_root").path.rstrip("/")
    return f"{ctx.base}{path[len(root) :]}?{urlencode(pairs, quote_via=quote, safe=_SAFE)}"


def service_base(request: Request) -> str:
    """The absolute URL of the service root, no trailing slash (the configured public
    URL's, when there is one)."""
    configured: str | None = request.app.state.settings.api_public_url
    root = request.url_for("sensorthings_root")
    if configured:
        prefix = root.path[len(request.scope.get("root_path", "")) :]
        return configured.rstrip("/") + prefix.rstrip("/")
    return str(root).rstrip("/")


def _context(request: Request) -> Context:
    values = request.query_params.getlist(INCLUDE_FAILED)
    if len(values) > 1:
        raise ODataError(INCLUDE_FAILED, "given more than once")
    include_failed = False
    if values:
        text = values[0].strip().lower()
        if text not in ("true", "false"):
            raise ODataError(INCLUDE_FAILED, f"must be true or false, not {values[0]!r}")
        include_failed = text == "true"
    return Context(service_base(request), include_failed)


def _options(request: Request) -> QueryOptions:
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name.startswith("$"):
            if name in values:
                raise ODataError(name, "given more than once")
            values[name] = value
    return parse_options(values)


def _respond(request: Request, document: Any) -> Response:
    # the licence headers, rate limit and micro-cache are the edge's, as for /v1
    return read_response(request, document, max_age=MAX_AGE_DATA)


def _bad(error: ODataError) -> Problem:
    return Problem(400, "Bad request parameter", error.message, parameter=error.option)


# ---------------------------------------------------------------------- OpenAPI


class EntitySet(BaseModel):
    name: str = Field(examples=["Things"])
    url: str


class ServerSettings(BaseModel):
    conformance: list[str]


class ServiceRoot(BaseModel):
    """The service root document (OGC 18-088 §9.2.1)."""

    value: list[EntitySet]
    serverSettings: ServerSettings  # the standard's spelling


def _option(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


#: The query options, documented for clients; the route reads them itself (they are
#: OData, and their errors name the option the OData way, `odata.ODataError`).
_QUERY_OPTIONS = [
    _option(
        "$top",
        f"Page size: default {DEFAULT_TOP}; more than {MAX_TOP} is served in pages of "
        f"{MAX_TOP} (follow `@iot.nextLink`).",
        {"type": "integer", "minimum": 0},
    ),
    _option(
        "$skip",
        "How many entities to skip.",
        {"type": "integer", "minimum": 0, "maximum": MAX_SKIP},
    ),
    _option("$count", "Add `@iot.count`, the size of the whole collection.", {"type": "boolean"}),
    _option("$orderby", "e.g. `phenomenonTime desc`.", {"type": "string"}),
    _option("$select", "Properties to return, comma-separated.", {"type": "string"}),
    _option(
        "$expand",
        "Related entities to include, with their own options: "
        "`Datastreams($top=1;$expand=Observations)`.",
        {"type": "string"},
    ),
    _option(
        "$filter",
        "OData filter: `phenomenonTime ge 2026-01-05T00:00:00Z and result gt 20`; "
        "geospatial functions `geo.distance geo.length geo.intersects st_equals "
        "st_disjoint st_touches st_within st_overlaps st_crosses st_intersects "
        "st_contains st_relate` on points (location, feature, observedArea) against "
        "`geography'POINT|LINESTRING|POLYGON (…)'` literals, distances in degrees.",
        {"type": "string"},
    ),
    _option(
        "$resultFormat",
        "`dataArray`: Observations grouped per Datastream as rows of values (OGC 18-088 §14.3).",
        {"type": "string", "enum": ["dataArray"]},
    ),
    _option(
        "$skiptoken",
        "The server's paging position in an `@iot.nextLink` (opaque).",
        {"type": "string"},
    ),
    _option(
        INCLUDE_FAILED,
        "Observations flagged FAIL by quality control (QARTOD flag 4) are left out "
        "unless this is true.",
        {"type": "boolean", "default": False},
    ),
]

_RESOURCE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An entity, a collection of them (`value`, with `@iot.count` when "
        "asked for and `@iot.nextLink` while more follow), or one property; a "
        "property's `$value` as plain text.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "value": {"type": "array", "items": {"type": "object"}},
                        "@iot.count": {"type": "integer"},
                        "@iot.nextLink": {"type": "string"},
                    },
                }
            },
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


# ---------------------------------------------------------------------- routes


def conformance(request: Request) -> dict[str, Any]:
    """``serverSettings`` of the service root (§9.2.1): the conformance classes, and
    the MQTT endpoint where Observations are published (§14.2) when there is one."""
    classes: list[str] = list(CONFORMANCE)
    settings: dict[str, Any] = {"conformance": classes}
    endpoint: str | None = request.app.state.settings.sta_mqtt_public_url
    if request.app.state.settings.sta_mqtt_publish and endpoint:
        classes.append(MQTT_RECEIVE)
        settings[MQTT_RECEIVE] = {"endpoints": [endpoint]}
    return settings


@router.get(
    "",
    name="sensorthings_root",
    response_model=ServiceRoot,
    summary="SensorThings service root: entity sets and conformance",
    tags=["sensorthings"],
)
async def service_root(request: Request) -> Response:
    """The entity sets of this read-only OGC SensorThings API v1.1 view of the open
    data, and the conformance classes it implements."""
    base = service_base(request)
    document = {
        "value": [{"name": name, "url": f"{base}/{name}"} for name in ENTITIES],
        "serverSettings": conformance(request),
    }
    return _respond(request, document)


@router.get(
    "/sensorml/{device_id}",
    summary="A Sensor's SensorML 2.0 description",
    tags=["sensorthings"],
    response_class=Response,
    responses={
        200: {
            "description": "The sensor as a SensorML 2.0 PhysicalComponent (the document "
            "a Sensor's `metadata` links to): its maker, model, site, position and "
            "outputs.",
            "content": {
                "application/xml": {"schema": {"type": "string"}, "example": SENSORML_EXAMPLE}
            },
        }
    },
)
async def sensorml(
    request: Request,
    device_id: Annotated[
        str, Path(description="The Sensor's id (a device id).", examples=["aq-sentrum"])
    ],
) -> Response:
    """The SensorML document of one Sensor (public fields only)."""
    return await sensorml_response(request, device_id, service_base(request))


@router.get(
    "/{resource_path:path}",
    summary="SensorThings resources: /Things, /Datastreams(5)/Observations, …",
    tags=["sensorthings"],
    responses=_RESOURCE_RESPONSES,
    openapi_extra={"parameters": _QUERY_OPTIONS},
)
async def resource(
    request: Request,
    resource_path: Annotated[
        str,
        Path(
            description="A resource path (OGC 18-088 §9.2): an entity set, an entity, "
            "navigations and properties, separated by `/`; `…/$ref` for links only.",
            examples=["Datastreams(1)/Observations"],
        ),
    ],
) -> Response:
    """Any SensorThings v1.1 resource path with the query options ``$top $skip
    $count $orderby $select $expand $filter $resultFormat`` (OGC 18-088 §9, §14.3)."""
    if not resource_path.strip("/"):
        return await service_root(request)
    try:
        ctx = _context(request)
        resolved = resolve(resource_path.strip("/"), ctx.base)
        options = _options(request)
        options = _shaped(resolved, options)
    except ODataError as error:
        raise _bad(error) from None
    try:
        async with pool_of(request).connection() as conn, conn.transaction():
            await conn.execute(
                sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(STATEMENT_TIMEOUT))
            )
            return await _answer(request, conn, ctx, resolved, options, resource_path)
    except ODataError as error:
        raise _bad(error) from None
    except psycopg.errors.QueryCanceled:
        raise Problem(
            400,
            "Query too costly",
            f"the query ran longer than {STATEMENT_TIMEOUT}; bound Observations by "
            "Datastream and by phenomenonTime in $filter, or ask for fewer rows",
            parameter="$filter",
        ) from None


def _shaped(resolved: Resolved, options: QueryOptions) -> QueryOptions:
    """The options a $ref or dataArray request is answered with, or a 400."""
    if options.result_format == "dataArray" and (
        resolved.entity is not OBSERVATION
        or resolved.single
        or resolved.ref
        or resolved.property is not None
    ):
        raise ODataError("$resultFormat", "dataArray applies to collections of Observations")
    if options.result_format == "dataArray" and options.expand:
        raise ODataError("$expand", "does not apply to $resultFormat=dataArray")
    if resolved.ref:
        if options.select is not None or options.expand:
            raise ODataError(
                "$select" if options.select is not None else "$expand",
                "does not apply to $ref, which lists @iot.selfLink only",
            )
        return replace(options, select=("@iot.selfLink",))
    return options


async def _answer(
    request: Request,
    conn: AsyncConnection[TupleRow],
    ctx: Context,
    resolved: Resolved,
    options: QueryOptions,
    path: str,
) -> Response:
    entity = resolved.entity
    if resolved.single:
        single_options = options
        if resolved.property is not None:
            single_options = QueryOptions(select=(resolved.property,))
        documents, _, _ = await _page(
            conn, ctx, entity, single_options, resolved.where, resolved.params, single=True
        )
        if not documents:
            raise _not_found(path, f"no such {entity.name}")
        document = documents[0]
        if resolved.property is not None:
            value = document[resolved.property]
            if resolved.raw_value:
                text = value if isinstance(value, str) else _json_text(value)
                return cacheable_response(
                    request,
                    text.encode(),
                    max_age=MAX_AGE_DATA,
                    response_class=PlainTextResponse,
                )
            return _respond(request, {resolved.property: value})
        return _respond(request, document)

    count: int | None = None
    # a dataArray lists the selected components, but its rows need every id
    page_options = replace(options, select=None) if options.result_format else options
    values: list[dict[str, Any]] | None = None
    if entity is OBSERVATION and page_json.applies(options):
        components = page_json.data_array_components(options) if options.result_format else None
        found, json_values, last = await _observations_json(
            conn, ctx, page_options, resolved, components
        )
        more = found > options.page_size
    else:
        values, more, last = await _page(
            conn, ctx, entity, page_options, resolved.where, resolved.params, single=False
        )
        found = len(values)
    if not found and resolved.parent is not None and not await _exists(conn, resolved.parent):
        raise _not_found(path, f"no such {resolved.parent.entity.name}")
    if options.count:
        # entity_query compiled the $filter into resolved.where: count the same rows
        rows = await _rows(conn, count_query(entity, resolved.where, resolved.params))
        count = int(rows[0][0])
    collection: dict[str, Any] = {}
    if count is not None:
        collection["@iot.count"] = count
    if more and options.page_size > 0:
        collection["@iot.nextLink"] = _next_link(request, ctx, options, last)
    if values is None:
        collection["value"] = DATA_PLACEHOLDER
        return spliced_response(request, collection, json_values, max_age=MAX_AGE_DATA)
    collection["value"] = values
    return _respond(request, collection)


def _json_text(value: Any) -> str:
    return dumps(value).decode()
