"""The geospatial functions of ``$filter`` (OGC 18-088 §9.3.3.5.2, Table 23): the
OData ``geo.distance``, ``geo.length`` and ``geo.intersects``, and the nine Simple
Features relations (OGC 06-104r4 §6.1.2.3) ``st_equals st_disjoint st_touches
st_within st_overlaps st_crosses st_intersects st_contains st_relate``, computed in
SQL without PostGIS.

Why without PostGIS: the platform runs on plain PostgreSQL and on the timescale/
timescaledb image, neither of which has it, and every geometry this service holds is
a point (a site's Location, FeatureOfInterest and the Datastream's observedArea).
The other side of a relation is a WKT literal of the filter — ``POINT``,
``LINESTRING`` or ``POLYGON`` (with holes) — so each function is "a point against a
literal geometry", exactly: a point is in the interior, on the boundary or in the
exterior of the literal, and the DE-9IM matrix (06-104r4 §6.1.15.2) follows from
that.  The literal's vertices go to the database as array parameters; the SQL tests
the point against every edge (ray casting with the even-odd rule, so holes come out
right, and an exact on-segment test for the boundary).  Two literals, or two lines
or polygons, are refused with a 400 naming the limitation.

Coordinates are longitude and latitude (WGS 84, as GeoJSON, RFC 7946 §4), and
distances and lengths are planar in degrees: what PostGIS computes for a
``geometry(Point, 4326)`` and what FROST-Server, the reference implementation,
returns for ``geo.distance`` — so ``geo.distance(location, geography'POINT(17.4
68.4)') lt 0.01`` means the same here as there.  OData does not fix the unit, and a
client that wants metres can scale: near Narvik 0.01° of latitude is about 1.1 km,
of longitude about 0.4 km.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import sql

Coordinate = tuple[float, float]


class GeometryError(ValueError):
    """A geometry literal that is not WKT this service understands."""


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class LineString:
    points: tuple[Coordinate, ...]

    @property
    def closed(self) -> bool:
        return self.points[0] == self.points[-1]

    @property
    def length(self) -> float:
        return sum(
            math.hypot(bx - ax, by - ay)
            for (ax, ay), (bx, by) in zip(self.points, self.points[1:], strict=False)
        )


@dataclass(frozen=True, slots=True)
class Polygon:
    rings: tuple[tuple[Coordinate, ...], ...]  # the shell, then the holes


Geometry = Point | LineString | Polygon

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"^\s*({_NUMBER})\s*,?\s+({_NUMBER})\s*$|^\s*({_NUMBER})\s*,\s*({_NUMBER})\s*$")
_SRID = re.compile(r"^\s*SRID\s*=\s*(\d+)\s*;", re.IGNORECASE)
_TAGGED = re.compile(r"^\s*([A-Za-z]+)\s*(?:(Z|M|ZM)\s*)?\((.*)\)\s*$", re.DOTALL)
#: coordinate reference systems a literal may name: WGS 84 as longitude, latitude
_SRIDS = frozenset({4326, 0})


def _coordinate(text: str) -> Coordinate:
    found = _PAIR.match(text)
    if found is None:
        raise GeometryError(f"{text.strip()!r} is not a coordinate pair 'x y'")
    numbers = [g for g in found.groups() if g is not None]
    x, y = (float(n) for n in numbers)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise GeometryError("coordinates must be finite numbers")
    return x, y


def _coordinates(text: str) -> tuple[Coordinate, ...]:
    return tuple(_coordinate(part) for part in text.split(","))


def _rings(text: str) -> tuple[tuple[Coordinate, ...], ...]:
    rings = re.findall(r"\(([^()]*)\)", text)
    if not rings or re.sub(r"\([^()]*\)", "", text).strip(" ,\t\n"):
        raise GeometryError("a POLYGON is one or more rings in parentheses: ((x y, …), (…))")
    result = []
    for ring in rings:
        points = _coordinates(ring)
        if len(points) < 4 or points[0] != points[-1]:
            raise GeometryError(
                "each POLYGON ring needs at least 4 points and must end where it starts"
            )
        result.append(points)
    return tuple(result)


def parse_wkt(text: str) -> Geometry:
    """A ``POINT``, ``LINESTRING`` or ``POLYGON`` in Well-Known Text (OGC 06-103r4
    §7), optionally after ``SRID=4326;`` (OData's literal form)."""
    body = text
    srid = _SRID.match(body)
    if srid is not None:
        if int(srid.group(1)) not in _SRIDS:
            raise GeometryError(
                f"SRID={srid.group(1)} is not supported: coordinates are WGS 84 "
                "longitude and latitude (SRID=4326)"
            )
        body = body[srid.end() :]
    tagged = _TAGGED.match(body)
    if tagged is None:
        raise GeometryError(f"{text.strip()[:60]!r} is not WKT like POINT (17.4 68.4)")
    kind, dimensions, inner = tagged.group(1).upper(), tagged.group(2), tagged.group(3)
    if dimensions is not None:
        raise GeometryError(f"{kind} {dimensions.upper()}: only 2D coordinates are supported")
    if kind == "POINT":
        return Point(*_coordinate(inner))
    if kind == "LINESTRING":
        points = _coordinates(inner)
        if len(set(points)) < 2:
            raise GeometryError("a LINESTRING needs at least two distinct points")
        return LineString(points)
    if kind == "POLYGON":
        return Polygon(_rings(inner))
    raise GeometryError(f"{kind} is not supported (POINT, LINESTRING and POLYGON are)")


def wkt(geometry: Geometry) -> str:
    """The geometry as WKT (for messages and tests)."""

    def pairs(points: tuple[Coordinate, ...]) -> str:
        return ", ".join(f"{x:g} {y:g}" for x, y in points)

    if isinstance(geometry, Point):
        return f"POINT ({geometry.x:g} {geometry.y:g})"
    if isinstance(geometry, LineString):
        return f"LINESTRING ({pairs(geometry.points)})"
    return "POLYGON (" + ", ".join(f"({pairs(r)})" for r in geometry.rings) + ")"


def geojson(geometry: Geometry) -> dict[str, Any]:
    """The geometry as a GeoJSON object (RFC 7946 §3.1)."""
    if isinstance(geometry, Point):
        return {"type": "Point", "coordinates": [geometry.x, geometry.y]}
    if isinstance(geometry, LineString):
        return {"type": "LineString", "coordinates": [list(p) for p in geometry.points]}
    return {
        "type": "Polygon",
        "coordinates": [[list(p) for p in ring] for ring in geometry.rings],
    }


# ---------------------------------------------------------------------- SQL

S = sql.SQL
#: the boolean functions of two geometries
RELATIONS = frozenset(
    {
        "st_equals",
        "st_disjoint",
        "st_touches",
        "st_within",
        "st_overlaps",
        "st_crosses",
        "st_intersects",
        "st_contains",
        "geo.intersects",
    }
)
#: adds a value as a query parameter and returns its placeholder
AddParam = Callable[[Any], sql.Composable]


@dataclass(frozen=True, slots=True)
class SqlPoint:
    """A point as two SQL expressions (a property's columns, or parameters)."""

    x: sql.Composable
    y: sql.Composable


class Segments:
    """A literal's edges as four array parameters, for ``unnest`` in SQL."""

    def __init__(self, add: AddParam, chains: tuple[tuple[Coordinate, ...], ...]) -> None:
        ax: list[float] = []
        ay: list[float] = []
        bx: list[float] = []
        by: list[float] = []
        for chain in chains:
            for (x0, y0), (x1, y1) in itertools.pairwise(chain):
                ax.append(x0)
                ay.append(y0)
                bx.append(x1)
                by.append(y1)
        self.arrays = [add(values) for values in (ax, ay, bx, by)]

    def source(self) -> sql.Composable:
        return S(
            "unnest({}::float8[], {}::float8[], {}::float8[], {}::float8[]) s (ax, ay, bx, by)"
        ).format(*self.arrays)


def _on_segments(p: SqlPoint, segments: Segments) -> sql.Composable:
    """The point lies on one of the edges (exactly: collinear and within the box)."""
    return S(
        "EXISTS (SELECT 1 FROM {src} WHERE (s.bx - s.ax) * ({y} - s.ay)"
        " - (s.by - s.ay) * ({x} - s.ax) = 0"
        " AND {x} BETWEEN least(s.ax, s.bx) AND greatest(s.ax, s.bx)"
        " AND {y} BETWEEN least(s.ay, s.by) AND greatest(s.ay, s.by))"
    ).format(src=segments.source(), x=p.x, y=p.y)


def _inside_rings(p: SqlPoint, segments: Segments) -> sql.Composable:
    """Ray casting, even-odd over all rings: inside the shell and outside every hole
    (points on an edge are decided by `_on_segments`, not here)."""
    return S(
        "(mod((SELECT count(*) FROM {src} WHERE (s.ay > {y}) <> (s.by > {y})"
        " AND {x} < (s.bx - s.ax) * ({y} - s.ay) / nullif(s.by - s.ay, 0) + s.ax), 2) = 1)"
    ).format(src=segments.source(), x=p.x, y=p.y)


def _segment_distance(p: SqlPoint, segments: Segments) -> sql.Composable:
    """The shortest planar distance from the point to the edges."""
    return S(
        "(SELECT min(sqrt(power({x} - (e.ax + e.t * (e.bx - e.ax)), 2)"
        " + power({y} - (e.ay + e.t * (e.by - e.ay)), 2)))"
        " FROM (SELECT s.*, CASE WHEN s.ax = s.bx AND s.ay = s.by THEN 0"
        " ELSE greatest(0, least(1, (({x} - s.ax) * (s.bx - s.ax) + ({y} - s.ay) * (s.by - s.ay))"
        " / (power(s.bx - s.ax, 2) + power(s.by - s.ay, 2)))) END AS t FROM {src}) e)"
    ).format(src=segments.source(), x=p.x, y=p.y)


def _equal(p: SqlPoint, q: SqlPoint) -> sql.Composable:
    return S("({} = {} AND {} = {})").format(p.x, q.x, p.y, q.y)


@dataclass(frozen=True, slots=True)
class Location:
    """Where a point lies relative to a geometry, as three SQL booleans (exactly one
    is true): its interior, its boundary, its exterior; and the dimensions of the
    geometry's interior and boundary (for DE-9IM)."""

    interior: sql.Composable
    boundary: sql.Composable
    exterior: sql.Composable
    interior_dim: int
    boundary_dim: int | None  # None: the geometry has no boundary


def locate(p: SqlPoint, geometry: Geometry | SqlPoint, add: AddParam) -> Location:
    """Where ``p`` lies relative to ``geometry`` (a literal, or another point)."""
    if isinstance(geometry, SqlPoint | Point):
        q = geometry if isinstance(geometry, SqlPoint) else _literal_point(geometry, add)
        same = _equal(p, q)
        return Location(same, S("FALSE"), S("(NOT {})").format(same), 0, None)
    if isinstance(geometry, LineString):
        segments = Segments(add, (geometry.points,))
        on_line = _on_segments(p, segments)
        if geometry.closed:
            return Location(on_line, S("FALSE"), S("(NOT {})").format(on_line), 1, None)
        first = _literal_point(Point(*geometry.points[0]), add)
        last = _literal_point(Point(*geometry.points[-1]), add)
        at_end = S("({} OR {})").format(_equal(p, first), _equal(p, last))
        return Location(
            S("({} AND NOT {})").format(on_line, at_end),
            at_end,
            S("(NOT {})").format(on_line),
            1,
            0,
        )
    segments = Segments(add, geometry.rings)
    on_edge = _on_segments(p, segments)
    inside = _inside_rings(p, segments)
    return Location(
        S("(NOT {} AND {})").format(on_edge, inside),
        on_edge,
        S("(NOT {} AND NOT {})").format(on_edge, inside),
        2,
        1,
    )


def _literal_point(point: Point, add: AddParam) -> SqlPoint:
    return SqlPoint(S("{}::float8").format(add(point.x)), S("{}::float8").format(add(point.y)))


def relation(
    name: str, p: SqlPoint, other: Geometry | SqlPoint, add: AddParam, *, point_first: bool
) -> sql.Composable:
    """``name(point, other)`` (``point_first``) or ``name(other, point)`` as SQL."""
    where = locate(p, other, add)
    intersects = S("(NOT {})").format(where.exterior)
    if name in ("st_intersects", "geo.intersects"):
        return intersects
    if name == "st_disjoint":
        return where.exterior
    if name == "st_touches":
        # interiors apart, and they meet: a point's only part is its interior
        return where.boundary
    if name == "st_equals":
        # a point equals only a point at the same place
        return where.interior if where.interior_dim == 0 else S("FALSE")
    if name == "st_within":
        if point_first:
            return where.interior
        # a line or polygon is never within a point; a point within a point is equality
        return where.interior if where.interior_dim == 0 else S("FALSE")
    if name == "st_contains":
        if point_first:
            return where.interior if where.interior_dim == 0 else S("FALSE")
        return where.interior
    # st_crosses and st_overlaps: for a single point against anything, the interiors
    # would have to meet while the point also lies outside — impossible
    assert name in ("st_crosses", "st_overlaps"), name
    return S("FALSE")


def matrix(
    p: SqlPoint, other: Geometry | SqlPoint, add: AddParam, *, point_first: bool
) -> sql.Composable:
    """The DE-9IM matrix (06-104r4 §6.1.15.2) of the point and ``other`` as a
    9-character SQL text (row by row: interior, boundary, exterior of the first)."""
    where = locate(p, other, add)

    def cell(condition: sql.Composable) -> sql.Composable:
        return S("CASE WHEN {} THEN '0' ELSE 'F' END").format(condition)

    def dim(value: int | None) -> sql.Composable:
        return sql.Literal("F" if value is None else str(value))

    point_row: list[sql.Composable] = [
        cell(where.interior),
        cell(where.boundary),
        cell(where.exterior),
    ]
    empty_row: list[sql.Composable] = [sql.Literal("F")] * 3
    # the exterior of the point against the other's parts: everything but one point
    # of the other's interior (still of its dimension, unless the other is that point)
    if where.interior_dim == 0:
        exterior_interior: sql.Composable = cell(S("NOT {}").format(where.interior))
    else:
        exterior_interior = dim(where.interior_dim)
    if where.boundary_dim is None:
        exterior_boundary: sql.Composable = sql.Literal("F")
    else:
        # a line's boundary is its two end points: one may be the point, never both
        exterior_boundary = dim(where.boundary_dim)
    exterior_row: list[sql.Composable] = [exterior_interior, exterior_boundary, sql.Literal("2")]
    rows: list[list[sql.Composable]] = [point_row, empty_row, exterior_row]
    if not point_first:  # the transpose: the other geometry's parts first
        rows = [list(column) for column in zip(*rows, strict=True)]
    return S("({})").format(S(" || ").join([c for row in rows for c in row]))


def relate(pattern_param: sql.Composable, matrix_sql: sql.Composable) -> sql.Composable:
    """Whether a DE-9IM matrix matches a pattern of ``T F * 0 1 2`` (06-104r4
    §6.1.15.2: T is any non-empty intersection, * anything)."""
    return S(
        "(SELECT bool_and(CASE pc WHEN '*' THEN TRUE WHEN 'T' THEN mc <> 'F'"
        " ELSE pc = mc END) FROM unnest(string_to_array({p}, NULL),"
        " string_to_array({m}, NULL)) AS c (pc, mc))"
    ).format(p=pattern_param, m=matrix_sql)


def distance(p: SqlPoint, other: Geometry | SqlPoint, add: AddParam) -> sql.Composable:
    """The planar distance in degrees (see the module docstring)."""
    if isinstance(other, SqlPoint | Point):
        q = other if isinstance(other, SqlPoint) else _literal_point(other, add)
        return S("sqrt(power({} - {}, 2) + power({} - {}, 2))").format(p.x, q.x, p.y, q.y)
    if isinstance(other, LineString):
        return _segment_distance(p, Segments(add, (other.points,)))
    segments = Segments(add, other.rings)
    return S("CASE WHEN {} OR {} THEN 0::float8 ELSE {} END").format(
        _on_segments(p, segments), _inside_rings(p, segments), _segment_distance(p, segments)
    )


DE9IM_PATTERN = re.compile(r"^[TF*012]{9}$")
