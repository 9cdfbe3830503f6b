"""How the platform's tables appear as SensorThings v1.1 entities (OGC 18-088 §8).

=====================  ===================================================  ============
entity set             rows                                                  @iot.id
=====================  ===================================================  ============
Things                 sites                                                 site id
Locations              sites: the site's point (one Location per Thing)      site id
HistoricalLocations    sites: when the site was registered at its point      site id
FeaturesOfInterest     sites: the site's point, what the sensors observe     site id
Sensors                devices (public fields only, never the secret hash)   device id
ObservedProperties     metrics                                               metric key
Datastreams            series (one device × one metric)                      series id
Observations           readings; traffic series: hourly rollups (below)      "<series>-<µs>"
=====================  ===================================================  ============

A site has one place, so a Thing has one Location and one HistoricalLocation: the
time the site was registered there (``sites.created_at``).  The registry keeps no
history of moves (a site that moves is a new site), so there is nothing older to show.

An Observation's id is its series id and its phenomenon time in microseconds since
the epoch, e.g. ``"12-1714557600000000"``: stable, unique by the readings key
(series_id, time), and the series and time it names are all a lookup needs.

Traffic privacy: vehicle counts and speeds are published only as aggregates of at
least 15 minutes (DESIGN.md).  Rather than trusting each counter's reporting
interval, Datastreams of the aggregate-only domains (`AGGREGATE_ONLY_DOMAINS`:
traffic) give their Observations from the hourly rollups, and only for hours that
are over: the result is the hour's sum for counts and its mean otherwise (speed),
the phenomenonTime is the hour as an interval, resultTime its end, resultQuality is
absent (an aggregate has no QARTOD flag) and ``parameters`` say how it was made.
The Datastream's description and properties say so too.

resultQuality is an ISO 19157 DQ_Element (`quality_element`): the QARTOD flag as a
code of the IODE primary-level flag scheme, which is QARTOD's own scheme (1 good, 2
not evaluated, 3 suspect, 4 fail, 9 missing), published by the NERC vocabulary server
as collection L34 (`QUALITY_CODE_LIST`).  Observations flagged FAIL are left out of
collections unless ``include_failed=true`` (`api.sensorthings.routes`), as /v1's
aggregates leave them out: a user who averages Observations gets /v1's hourly means.

A Sensor's metadata is a SensorML 2.0 description (`api.sensorthings.sensorml`), so
its encodingType is SensorML's (18-088 Table 14) and metadata its URL.

Every entity is described by its SQL source (a FROM clause with fixed aliases, one
alias family per entity type so that nested sub-queries never clash), its
properties as SQL expressions, its keys (what navigation links join on) and its
navigation properties.  `api.sensorthings.compile` builds every query from these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from psycopg import sql

from api.licence import NLOD_URL
from api.queries import AGGREGATE_ONLY_DOMAINS

PropType = Literal["string", "number", "datetime", "boolean", "json"]

OM_MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
GEOJSON = "application/geo+json"
SENSORML = "http://www.opengis.net/doc/IS/SensorML/2.0"
#: the IODE primary-level quality flags, which QARTOD uses (NERC vocabulary L34)
QUALITY_CODE_LIST = "http://vocab.nerc.ac.uk/collection/L34/current/"
QUALITY_NAMES = {1: "good", 2: "not evaluated", 3: "suspect", 4: "fail", 9: "missing"}
#: the QARTOD flag of an Observation that failed (left out unless asked for)
FAIL = 4

#: units of the metric catalogue (SenML spelling, migration 0003): (name, definition)
UNITS: dict[str, tuple[str, str]] = {
    "ug/m3": ("microgram per cubic metre", "http://qudt.org/vocab/unit/MicroGM-PER-M3"),
    "Cel": ("degree Celsius", "http://qudt.org/vocab/unit/DEG_C"),
    "%RH": ("percent relative humidity", "http://qudt.org/vocab/unit/PERCENT_RH"),
    "hPa": ("hectopascal", "http://qudt.org/vocab/unit/HectoPA"),
    "kWh": ("kilowatt hour", "http://qudt.org/vocab/unit/KiloW-HR"),
    "W": ("watt", "http://qudt.org/vocab/unit/W"),
    "count": ("vehicles", "http://qudt.org/vocab/unit/NUM"),
    "km/h": ("kilometre per hour", "http://qudt.org/vocab/unit/KiloM-PER-HR"),
}
#: where a unit outside `UNITS` is defined: the SenML units registry (RFC 8428 §12.1)
SENML_UNITS = "https://www.iana.org/assignments/senml/senml.xhtml#senml-units"

PRIVATE = sql.Placeholder("sta_private")
#: the service root URL, a parameter of every query (absolute links built in SQL)
BASE = sql.Placeholder("sta_base")
#: the parameters every query built from these expressions needs (the unit table is
#: passed as parameters too: "%RH" in SQL text would read as a placeholder)
BASE_PARAMS: dict[str, Any] = {
    "sta_private": list(AGGREGATE_ONLY_DOMAINS),
    "sta_base": "",
    "sta_units": list(UNITS),
    "sta_unit_names": [name for name, _ in UNITS.values()],
    "sta_unit_definitions": [definition for _, definition in UNITS.values()],
}


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as STA examples write times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time_range(value: Any) -> str | None:
    """``start/end`` (ISO 8601 interval) from [start, end], or None when empty."""
    if not value or value[0] is None or value[1] is None:
        return None
    return f"{iso(value[0])}/{iso(value[1])}"


def _time_or_interval(value: Any) -> str | None:
    """A raw reading's instant, or an aggregate's interval: [time, end or None]."""
    if not value or value[0] is None:
        return None
    if value[1] is None:
        return iso(value[0])
    return f"{iso(value[0])}/{iso(value[1])}"


def _timestamp(value: Any) -> str | None:
    return None if value is None else iso(value)


def _point(value: Any) -> dict[str, Any] | None:
    """GeoJSON of [lon, lat] (RFC 7946 §3.1.2)."""
    if not value or value[0] is None:
        return None
    return {"type": "Point", "coordinates": [value[0], value[1]]}


_QUALITY_ELEMENTS: dict[int, dict[str, Any]] = {}


def quality_element(flag: int | None) -> dict[str, Any] | None:
    """An Observation's resultQuality: its QARTOD flag as an ISO 19157 DQ_Element
    with a quantitative result whose value is a code of `QUALITY_CODE_LIST`."""
    if flag is None:
        return None
    element = _QUALITY_ELEMENTS.get(flag)
    if element is None:
        element = {
            "measure": {
                "nameOfMeasure": "QARTOD primary flag",
                "measureIdentification": {
                    "code": "qartod_primary_flag",
                    "codeSpace": QUALITY_CODE_LIST,
                },
            },
            "evaluationMethod": {
                "evaluationMethodType": "directInternal",
                "evaluationMethodDescription": "QARTOD real-time tests at ingest: gross "
                "range, spike, rate of change, flat line, time gap",
            },
            "result": {
                "value": flag,
                "name": QUALITY_NAMES.get(flag, "unknown"),
                "code": f"{QUALITY_CODE_LIST}{flag}/",
                "codeList": QUALITY_CODE_LIST,
            },
        }
        _QUALITY_ELEMENTS[flag] = element
    return element


def quality_element_sql(flag: sql.Composable) -> sql.Composable:
    """`quality_element` in SQL, for $filter paths (``resultQuality/result/value``)."""
    names = S(
        "CASE {f} WHEN 1 THEN 'good' WHEN 2 THEN 'not evaluated' WHEN 3 THEN"
        " 'suspect' WHEN 4 THEN 'fail' WHEN 9 THEN 'missing' ELSE 'unknown' END"
    )
    return S(
        "CASE WHEN {f} IS NULL THEN NULL ELSE jsonb_build_object("
        "'measure', jsonb_build_object('nameOfMeasure', 'QARTOD primary flag',"
        " 'measureIdentification', jsonb_build_object('code', 'qartod_primary_flag',"
        " 'codeSpace', {cl}::text)),"
        " 'evaluationMethod', jsonb_build_object('evaluationMethodType', 'directInternal'),"
        " 'result', jsonb_build_object('value', {f}, 'name', {names},"
        " 'code', {cl}::text || {f} || '/', 'codeList', {cl}::text)) END"
    ).format(f=flag, cl=sql.Literal(QUALITY_CODE_LIST), names=names.format(f=flag))


@dataclass(frozen=True, slots=True)
class Prop:
    """An entity property: ``expr`` is what $filter and $orderby compare, ``select``
    what is read (default ``expr``), ``render`` turns it into JSON."""

    name: str
    expr: sql.Composable
    type: PropType
    select: sql.Composable | None = None
    render: Callable[[Any], Any] | None = None
    filterable: bool = True
    #: a GeoJSON point property: its longitude and latitude (the geospatial functions)
    point: tuple[sql.Composable, sql.Composable] | None = None
    #: a time interval property: its start and end (comparisons follow 18-088 §9.3.3.5.1)
    interval: tuple[sql.Composable, sql.Composable] | None = None

    @property
    def selected(self) -> sql.Composable:
        return self.select if self.select is not None else self.expr


@dataclass(frozen=True, slots=True)
class Nav:
    """A navigation property: rows of ``target`` whose key ``target_key`` equals this
    entity's key ``parent_key``."""

    name: str
    target: str  # entity set name
    parent_key: str
    target_key: str
    to_many: bool


@dataclass(frozen=True, slots=True)
class Entity:
    name: str  # entity type, e.g. "Thing"
    set_name: str  # entity set, e.g. "Things"
    source: sql.Composable  # FROM clause (Observations: see api.sensorthings.compile)
    id_expr: sql.Composable
    id_is_int: bool
    props: dict[str, Prop]
    keys: dict[str, sql.Composable]
    navs: dict[str, Nav]
    default_order: tuple[tuple[sql.Composable, bool], ...]  # (expr, descending)
    id_pattern: str = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # ids that can exist
    extra: dict[str, Any] = field(default_factory=dict)


def _props(*props: Prop) -> dict[str, Prop]:
    return {p.name: p for p in props}


def _navs(*navs: Nav) -> dict[str, Nav]:
    return {n.name: n for n in navs}


S = sql.SQL

# ---------------------------------------------------------------------- Things, Locations

THING = Entity(
    name="Thing",
    set_name="Things",
    source=S("sites th"),
    id_expr=S("th.id"),
    id_is_int=False,
    props=_props(
        Prop("name", S("th.name"), "string"),
        Prop(
            "description",
            S(
                "th.name || ' (' || replace(th.kind, '_', ' ') || ' site, '"
                " || th.municipality || ')'"
            ),
            "string",
        ),
        Prop(
            "properties",
            S(
                "th.properties || jsonb_build_object('kind', th.kind,"
                " 'municipality', th.municipality)"
            ),
            "json",
        ),
    ),
    keys={"id": S("th.id")},
    navs=_navs(
        Nav("Locations", "Locations", "id", "id", to_many=True),
        Nav("HistoricalLocations", "HistoricalLocations", "id", "id", to_many=True),
        Nav("Datastreams", "Datastreams", "id", "site_id", to_many=True),
    ),
    default_order=((S("th.id"), False),),
    id_pattern=r"[a-z0-9][a-z0-9_-]{0,63}",
)


def _place(alias: str, name: str, kind: Literal["Location", "FeatureOfInterest"]) -> Entity:
    a = sql.Identifier(alias)
    geometry = S(
        "jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array({a}.lon, {a}.lat))"
    ).format(a=a)
    if kind == "Location":
        navs = _navs(
            Nav("Things", "Things", "id", "id", to_many=True),
            Nav("HistoricalLocations", "HistoricalLocations", "id", "id", to_many=True),
        )
        what = "Location of"
        set_name = "Locations"
        geometry_prop = "location"
    else:
        navs = _navs(Nav("Observations", "Observations", "id", "site_id", to_many=True))
        what = "Surroundings observed at"
        set_name = "FeaturesOfInterest"
        geometry_prop = "feature"
    return Entity(
        name=kind,
        set_name=set_name,
        source=S("sites {}").format(a),
        id_expr=S("{}.id").format(a),
        id_is_int=False,
        props=_props(
            Prop("name", S("{}.name").format(a), "string"),
            Prop(
                "description",
                S("{} || ' ' || {}.name").format(sql.Literal(what), a),
                "string",
            ),
            Prop("encodingType", sql.Literal(GEOJSON), "string"),
            Prop(
                geometry_prop,
                geometry,
                "json",
                point=(S("{}.lon").format(a), S("{}.lat").format(a)),
            ),
            Prop(
                "properties",
                S(
                    "{a}.properties || jsonb_build_object('site', {a}.id, 'kind', {a}.kind,"
                    " 'municipality', {a}.municipality)"
                ).format(a=a),
                "json",
            ),
        ),
        keys={"id": S("{}.id").format(a)},
        navs=navs,
        default_order=((S("{}.id").format(a), False),),
        id_pattern=r"[a-z0-9][a-z0-9_-]{0,63}",
        extra={"alias": name},
    )


LOCATION = _place("lo", "Locations", "Location")
FEATURE = _place("fo", "FeaturesOfInterest", "FeatureOfInterest")

HISTORICAL_LOCATION = Entity(
    name="HistoricalLocation",
    set_name="HistoricalLocations",
    source=S("sites hl"),
    id_expr=S("hl.id"),
    id_is_int=False,
    props=_props(Prop("time", S("hl.created_at"), "datetime", render=_timestamp)),
    keys={"id": S("hl.id")},
    navs=_navs(
        Nav("Thing", "Things", "id", "id", to_many=False),
        Nav("Locations", "Locations", "id", "id", to_many=True),
    ),
    default_order=((S("hl.created_at"), True), (S("hl.id"), False)),
    id_pattern=r"[a-z0-9][a-z0-9_-]{0,63}",
)

# ---------------------------------------------------------------------- Sensors, ObservedProperties

SENSOR = Entity(
    name="Sensor",
    set_name="Sensors",
    source=S("devices se"),
    id_expr=S("se.id"),
    id_is_int=False,
    props=_props(
        Prop("name", S("se.id"), "string"),
        Prop(
            "description",
            S("concat_ws(' ', se.vendor, se.model, replace(se.kind, '_', ' ') || ' sensor')"),
            "string",
        ),
        Prop("encodingType", sql.Literal(SENSORML), "string"),
        # the URL of the Sensor's SensorML document (api.sensorthings.sensorml)
        Prop("metadata", S("{}::text || '/sensorml/' || se.id").format(BASE), "string"),
        # public fields only (db.registry.PUBLIC_DEVICE_COLUMNS)
        Prop(
            "properties",
            S(
                "jsonb_build_object('kind', se.kind, 'vendor', se.vendor, 'model', se.model,"
                " 'status', se.status, 'online', se.online, 'lastSeen', se.last_seen,"
                " 'site', se.site_id)"
            ),
            "json",
        ),
    ),
    keys={"id": S("se.id")},
    navs=_navs(Nav("Datastreams", "Datastreams", "id", "device_id", to_many=True)),
    default_order=((S("se.id"), False),),
)

OBSERVED_PROPERTY = Entity(
    name="ObservedProperty",
    set_name="ObservedProperties",
    source=S("metrics op"),
    id_expr=S("op.key"),
    id_is_int=False,
    props=_props(
        Prop("name", S("op.name"), "string"),
        Prop("definition", S("op.definition_uri"), "string"),
        Prop("description", S("op.description"), "string"),
        Prop(
            "properties",
            S(
                "jsonb_build_object('key', op.key, 'domain', op.domain, 'unit', op.unit,"
                " 'unitSymbol', op.unit_symbol, 'valueType', op.value_type,"
                " 'minValue', op.min_value, 'maxValue', op.max_value)"
            ),
            "json",
        ),
    ),
    keys={"id": S("op.key")},
    navs=_navs(Nav("Datastreams", "Datastreams", "id", "metric", to_many=True)),
    default_order=((S("op.key"), False),),
    id_pattern=r"[a-z][a-z0-9_]{0,31}",
)

# ---------------------------------------------------------------------- Datastreams

_AGGREGATE = S("ds_m.domain = ANY({})").format(PRIVATE)
_HOURS_OVER = S("ro.bucket <= now() - interval '1 hour'")


def _series_edge(descending: bool) -> sql.Composable:
    """The first (or last) time of a series: one probe of the readings key, or of the
    hourly rollups for aggregate-only series."""
    direction = S("DESC") if descending else S("ASC")
    return S(
        "CASE WHEN {aggregate} THEN (SELECT ro.bucket FROM rollups ro"
        " WHERE ro.series_id = ds.id AND ro.resolution = '1h' AND {over}"
        " ORDER BY ro.bucket {dir} LIMIT 1)"
        " ELSE (SELECT r.time FROM readings r WHERE r.series_id = ds.id"
        " ORDER BY r.time {dir} LIMIT 1) END"
    ).format(aggregate=_AGGREGATE, over=_HOURS_OVER, dir=direction)


_FIRST = _series_edge(False)
_LAST = _series_edge(True)
_HOUR_IF_AGGREGATE = S("CASE WHEN {} THEN interval '1 hour' ELSE interval '0' END").format(
    _AGGREGATE
)

DATASTREAM = Entity(
    name="Datastream",
    set_name="Datastreams",
    source=S(
        "series ds JOIN devices ds_d ON ds_d.id = ds.device_id"
        " JOIN metrics ds_m ON ds_m.key = ds.metric"
        " LEFT JOIN sites ds_s ON ds_s.id = ds_d.site_id"
        " LEFT JOIN unnest(%(sta_units)s::text[], %(sta_unit_names)s::text[],"
        " %(sta_unit_definitions)s::text[]) ds_u (unit, name, definition)"
        " ON ds_u.unit = ds_m.unit"
    ),
    id_expr=S("ds.id"),
    id_is_int=True,
    props=_props(
        Prop("name", S("ds.device_id || ' ' || ds.metric"), "string"),
        Prop(
            "description",
            S(
                "ds_m.name || ' measured by ' || ds.device_id"
                " || coalesce(' at ' || ds_d.site_id, '')"
                " || CASE WHEN {} THEN ' (published as hourly '"
                " || CASE WHEN ds_m.value_type = 'count' THEN 'sums' ELSE 'means' END"
                " || ' only: privacy)' ELSE '' END"
            ).format(_AGGREGATE),
            "string",
        ),
        Prop(
            "unitOfMeasurement",
            S(
                "jsonb_build_object('name', coalesce(ds_u.name, ds_m.unit),"
                " 'symbol', ds_m.unit_symbol, 'definition', coalesce(ds_u.definition, {}))"
            ).format(sql.Literal(SENML_UNITS)),
            "json",
        ),
        Prop("observationType", sql.Literal(OM_MEASUREMENT), "string"),
        Prop(
            "phenomenonTime",
            _FIRST,
            "datetime",
            select=S("ARRAY[{}, {} + {}]").format(_FIRST, _LAST, _HOUR_IF_AGGREGATE),
            render=_time_range,
            interval=(_FIRST, S("({} + {})").format(_LAST, _HOUR_IF_AGGREGATE)),
        ),
        Prop(
            "resultTime",
            S("({} + {})").format(_FIRST, _HOUR_IF_AGGREGATE),
            "datetime",
            select=S("ARRAY[{} + {h}, {} + {h}]").format(_FIRST, _LAST, h=_HOUR_IF_AGGREGATE),
            render=_time_range,
            interval=(
                S("({} + {})").format(_FIRST, _HOUR_IF_AGGREGATE),
                S("({} + {})").format(_LAST, _HOUR_IF_AGGREGATE),
            ),
        ),
        # the bounding box of its features of interest: the one point of its site
        Prop(
            "observedArea",
            S(
                "CASE WHEN ds_s.id IS NULL THEN NULL ELSE jsonb_build_object('type', 'Point',"
                " 'coordinates', jsonb_build_array(ds_s.lon, ds_s.lat)) END"
            ),
            "json",
            select=S("ARRAY[ds_s.lon, ds_s.lat]"),
            render=_point,
            point=(S("ds_s.lon"), S("ds_s.lat")),
        ),
        Prop(
            "properties",
            S(
                "jsonb_build_object('metric', ds.metric, 'device', ds.device_id,"
                " 'site', ds_d.site_id, 'domain', ds_m.domain, 'unit', ds_m.unit,"
                " 'aggregation', CASE WHEN {} THEN CASE WHEN ds_m.value_type = 'count'"
                " THEN 'PT1H sum' ELSE 'PT1H mean' END ELSE 'none' END,"
                " 'license', {})"
            ).format(_AGGREGATE, sql.Literal(NLOD_URL)),
            "json",
        ),
    ),
    keys={
        "id": S("ds.id"),
        "site_id": S("ds_d.site_id"),
        "device_id": S("ds.device_id"),
        "metric": S("ds.metric"),
    },
    navs=_navs(
        Nav("Thing", "Things", "site_id", "id", to_many=False),
        Nav("Sensor", "Sensors", "device_id", "id", to_many=False),
        Nav("ObservedProperty", "ObservedProperties", "metric", "id", to_many=False),
        Nav("Observations", "Observations", "id", "series_id", to_many=True),
    ),
    default_order=((S("ds.id"), False),),
    id_pattern=r"[0-9]{1,10}",
)

# ---------------------------------------------------------------------- Observations
#
# The rows of an Observation, whichever table they come from, are the columns of
# `OBSERVATION_COLUMNS` under the alias ``ob``; api.sensorthings.compile builds the
# per-series sources.  The "branch" keys are the same keys at the series level,
# where conditions on them select series before any reading is touched.

OBSERVATION_COLUMNS = (
    "series_id",
    "phenomenon_time",
    "period_end",
    "result",
    "quality",
    "parameters",
    "site_id",
)

#: readings of a series ``ds`` (not aggregate-only)
READINGS_ROWS = S(
    "SELECT r.series_id, r.time AS phenomenon_time, NULL::timestamptz AS period_end,"
    " r.value AS result, r.quality, NULL::jsonb AS parameters, ds_d.site_id AS site_id"
    " FROM readings r WHERE r.series_id = ds.id"
)
#: hours that are over, from the hourly rollups of an aggregate-only series ``ds``
ROLLUP_ROWS = S(
    "SELECT ro.series_id, ro.bucket AS phenomenon_time,"
    " ro.bucket + interval '1 hour' AS period_end,"
    " CASE WHEN ds_m.value_type = 'count' THEN ro.sum ELSE ro.sum / ro.count END AS result,"
    " NULL::smallint AS quality,"
    " jsonb_build_object('aggregation', CASE WHEN ds_m.value_type = 'count'"
    " THEN 'sum' ELSE 'mean' END, 'interval', 'PT1H', 'readings', ro.count) AS parameters,"
    " ds_d.site_id AS site_id"
    " FROM rollups ro WHERE ro.series_id = ds.id AND ro.resolution = '1h'"
    " AND ro.bucket <= now() - interval '1 hour'"
)
#: the series with everything a Datastream property reads (conditions on the Datastream
#: are decided here, per series)
SERIES_FROM = DATASTREAM.source
OBSERVATION_ID = S(
    "ob.series_id::text || '-' || (extract(epoch FROM ob.phenomenon_time) * 1000000)::int8::text"
)

OBSERVATION = Entity(
    name="Observation",
    set_name="Observations",
    source=S("(observations)"),  # never used as such: see compile.observation_rows
    id_expr=OBSERVATION_ID,
    id_is_int=False,
    props=_props(
        Prop(
            "phenomenonTime",
            S("ob.phenomenon_time"),
            "datetime",
            select=S("ARRAY[ob.phenomenon_time, ob.period_end]"),
            render=_time_or_interval,
        ),
        Prop(
            "resultTime",
            S("coalesce(ob.period_end, ob.phenomenon_time)"),
            "datetime",
            render=_timestamp,
        ),
        Prop("result", S("ob.result"), "number"),
        Prop(
            "resultQuality",
            quality_element_sql(S("ob.quality")),
            "json",
            select=S("ob.quality"),
            render=quality_element,
        ),
        Prop("parameters", S("ob.parameters"), "json"),
    ),
    keys={"series_id": S("ob.series_id"), "site_id": S("ob.site_id")},
    navs=_navs(
        Nav("Datastream", "Datastreams", "series_id", "id", to_many=False),
        Nav("FeatureOfInterest", "FeaturesOfInterest", "site_id", "id", to_many=False),
    ),
    # oldest first: new readings come at the end, so a harvest through nextLinks
    # (keyset on phenomenonTime and series, api.sensorthings.routes) sees each once
    default_order=((S("ob.phenomenon_time"), False),),
    id_pattern=r"[0-9]{1,10}-[0-9]{1,19}",
    extra={"branch_keys": {"series_id": S("ds.id"), "site_id": S("ds_d.site_id")}},
)

ENTITIES: dict[str, Entity] = {
    e.set_name: e
    for e in (
        THING,
        LOCATION,
        HISTORICAL_LOCATION,
        DATASTREAM,
        SENSOR,
        OBSERVED_PROPERTY,
        OBSERVATION,
        FEATURE,
    )
}
